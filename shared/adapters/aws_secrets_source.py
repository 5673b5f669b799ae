"""A settings source that completes the settings from AWS Secrets Manager at load time.

The CDK app gives each function secret ARNs, never values. When ``QUARRY_AWS__*_SECRET_ARN`` is
set, this source reads that secret (once per settings load: a Lambda cold start) and fills in
the values it holds, on top of what the environment says:

- ``QUARRY_AWS__DB_SECRET_ARN``: the JSON RDS generates (``username``, ``password``, ``host``,
  ``port``, ``dbname``, ...). ``QUARRY_DB__URL`` gets the user and password; without a URL one is
  built from the secret's host, port and database (``postgresql+psycopg://...?sslmode=require``).
  The environment's host wins over the secret's: it names the RDS Proxy, the secret the cluster.
  With ``QUARRY_AWS__DB_IAM_AUTH`` no password goes into the URL (each new connection gets an
  IAM token instead, see ``shared.adapters.rds_iam_auth``) and a configured URL needs no secret.
- ``QUARRY_AWS__REDIS_SECRET_ARN``: ``{username, password}``, the AUTH credentials put into
  ``QUARRY_CACHE__REDIS_URL``, which must be a TLS (``rediss://``) URL.
- ``QUARRY_AWS__MILVUS_SECRET_ARN``: ``{uri, token}``; the token, and the URI when not empty.
- ``QUARRY_AWS__JWT_SECRET_ARN``: ``{jwt_secret}``, at least 32 bytes (the stack generates it).
- ``QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN``: the API key pepper, at least 32 bytes: the secret
  string itself (as the stack generates it), or, when it starts with ``{``, a JSON object
  ``{api_key_pepper}``. A secret of its own because Secrets Manager generates one value per
  secret, and both must exist after one ``cdk deploy``.

A secret that cannot be read, is not the JSON object it should be or lacks a key raises
``ConfigurationError`` naming the secret's ARN and the key, never a value. Keyword arguments to
``Settings`` still win over what the secrets say. boto3 is imported only when a secret ARN is
set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from sqlalchemy.engine import URL, make_url

from shared.errors import ConfigurationError, DependencyUnavailable

POSTGRES_DRIVER = "postgresql+psycopg"
MIN_AUTH_SECRET_BYTES = 32  # the signing secret and the pepper, as the settings check them
_BOOL = TypeAdapter(bool)  # "true", "1", "yes"... as the settings model reads them
# Secrets Manager answers that no retry will change: the deployment is wrong.
_UNREADABLE_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "DecryptionFailure",
        "InvalidRequestException",
        "InvalidParameterException",
    }
)


class SecretsManagerReader:
    """Reads secret strings, each ARN once."""

    def __init__(self, client: Any = None, *, region: str | None = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import NoRegionError

            try:
                client = boto3.client(
                    "secretsmanager",
                    region_name=region,
                    config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"}),
                )
            except NoRegionError as exc:
                raise ConfigurationError(
                    "reading secrets needs an AWS region: set QUARRY_AWS__REGION or AWS_REGION"
                ) from exc
        self._client: Any = client
        self._read: dict[str, str] = {}

    def read_text(self, arn: str) -> str:
        if arn not in self._read:
            self._read[arn] = self._fetch(arn)
        return self._read[arn]

    def read_json(self, arn: str) -> dict[str, Any]:
        """The secret as a JSON object."""
        try:
            value = json.loads(self.read_text(arn))
        except json.JSONDecodeError:
            raise _malformed(arn, "it is not JSON") from None  # the error quotes the value
        if not isinstance(value, dict):
            raise _malformed(arn, "it is not a JSON object")
        return value

    def _fetch(self, arn: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_secret_value(SecretId=arn)
        except ClientError as exc:
            reason = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if reason in _UNREADABLE_CODES:
                raise ConfigurationError(
                    f"the secret {arn} cannot be read ({reason})",
                    code="secret_unreadable",
                    details={"secret_arn": arn, "reason": reason},
                ) from exc
            raise _unavailable(arn, reason) from exc
        except BotoCoreError as exc:
            raise _unavailable(arn, type(exc).__name__) from exc
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise _malformed(arn, "it holds no SecretString (binary secrets are not read)")
        return text


class AwsSecretsSource(PydanticBaseSettingsSource):
    """``configured``: the sources below this one (environment, ``.env``), highest priority
    first; the ARNs and the values the secrets complete are read from them and from the
    keyword arguments above."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        *,
        configured: Iterable[PydanticBaseSettingsSource],
    ) -> None:
        super().__init__(settings_cls)
        self._configured = tuple(configured)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything happens in __call__

    def __call__(self) -> dict[str, Any]:
        states = [source() for source in reversed(self._configured)] + [self.current_state]
        aws = _group(states, "aws")
        names = (
            "db_secret_arn",
            "redis_secret_arn",
            "milvus_secret_arn",
            "jwt_secret_arn",
            "api_key_pepper_secret_arn",
        )
        arns = {name: str(aws[name]) for name in names if aws.get(name)}
        if not arns:
            return {}
        reader = SecretsManagerReader(region=aws.get("region") or None)
        resolved: dict[str, Any] = {}
        if "db_secret_arn" in arns:
            url = database_url(
                _group(states, "db").get("url"),
                arns["db_secret_arn"],
                reader,
                iam_auth=_BOOL.validate_python(aws.get("db_iam_auth") or False),
            )
            if url is not None:
                resolved["db"] = {"url": url}
        if "redis_secret_arn" in arns:
            configured_url = _group(states, "cache").get("redis_url")
            resolved["cache"] = {
                "redis_url": redis_url(configured_url, arns["redis_secret_arn"], reader)
            }
        if "milvus_secret_arn" in arns:
            resolved["vectors"] = milvus_settings(arns["milvus_secret_arn"], reader)
        auth: dict[str, str] = {}
        if "jwt_secret_arn" in arns:
            auth["jwt_secret"] = jwt_secret(arns["jwt_secret_arn"], reader)
        if "api_key_pepper_secret_arn" in arns:
            auth["api_key_pepper"] = api_key_pepper(arns["api_key_pepper_secret_arn"], reader)
        if auth:
            resolved["auth"] = auth
        return resolved


def database_url(
    configured: str | None, arn: str, reader: SecretsManagerReader, *, iam_auth: bool
) -> str | None:
    """The SQLAlchemy URL with the secret's user (and password unless ``iam_auth``); None when
    IAM authentication needs nothing from the secret."""
    if iam_auth and configured:
        return None
    secret = reader.read_json(arn)
    if configured:
        base = make_url(configured)
    else:
        base = URL.create(
            POSTGRES_DRIVER,
            host=_text(secret, "host", arn),
            port=int(_text(secret, "port", arn)),
            database=_text(secret, "dbname", arn),
        )
    url = base.set(
        username=_text(secret, "username", arn),
        password=None if iam_auth else _text(secret, "password", arn),
    )
    if "sslmode" not in url.query:
        url = url.update_query_dict({"sslmode": "require"})
    return url.render_as_string(hide_password=False)


def redis_url(configured: str | None, arn: str, reader: SecretsManagerReader) -> str:
    """``configured`` with the secret's user and password as its credentials."""
    if not configured:
        raise ConfigurationError(
            f"QUARRY_AWS__REDIS_SECRET_ARN ({arn}) needs QUARRY_CACHE__REDIS_URL (host and port)",
            details={"secret_arn": arn},
        )
    parts = urlsplit(configured)
    if parts.scheme != "rediss":
        raise ConfigurationError(
            "QUARRY_CACHE__REDIS_URL must be a rediss:// (TLS) URL to carry the secret's "
            f"password ({arn})",
            details={"secret_arn": arn},
        )
    secret = reader.read_json(arn)
    username = secret.get("username") or parts.username
    password = _text(secret, "password", arn)
    host = parts.netloc.rpartition("@")[2]
    user = quote(str(username), safe="") if username else ""
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def milvus_settings(arn: str, reader: SecretsManagerReader) -> dict[str, Any]:
    secret = reader.read_json(arn)
    vectors: dict[str, Any] = {"milvus_token": _text(secret, "token", arn)}
    uri = secret.get("uri")
    if uri:
        vectors["milvus_uri"] = _text(secret, "uri", arn)
    return vectors


def jwt_secret(arn: str, reader: SecretsManagerReader) -> str:
    return _auth_secret(_text(reader.read_json(arn), "jwt_secret", arn), "jwt_secret", arn)


def api_key_pepper(arn: str, reader: SecretsManagerReader) -> str:
    """The secret string itself, or the ``api_key_pepper`` of a JSON object (one starting
    with ``{``: a generated pepper is alphanumeric)."""
    text = reader.read_text(arn)
    if text.lstrip().startswith("{"):
        text = _text(reader.read_json(arn), "api_key_pepper", arn)
    return _auth_secret(text, "api_key_pepper", arn)


def _auth_secret(value: str, key: str, arn: str) -> str:
    if len(value.encode()) < MIN_AUTH_SECRET_BYTES:
        raise _malformed(arn, f"its {key!r} is shorter than {MIN_AUTH_SECRET_BYTES} bytes")
    return value


def _text(secret: Mapping[str, Any], key: str, arn: str) -> str:
    value = secret.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _malformed(arn, f"it has no {key!r}")
    return str(value)


def _group(states: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    """One settings group merged over the sources, lowest priority first."""
    merged: dict[str, Any] = {}
    for state in states:
        value = state.get(name)
        if isinstance(value, BaseModel):
            merged.update(value.model_dump())
        elif isinstance(value, Mapping):
            merged.update(value)
    return merged


def _malformed(arn: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"the secret {arn} is malformed: {why}",
        code="secret_malformed",
        details={"secret_arn": arn},
    )


def _unavailable(arn: str, reason: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"Secrets Manager did not answer for {arn} ({reason})",
        code="secrets_unavailable",
        details={"secret_arn": arn, "reason": reason},
    )
