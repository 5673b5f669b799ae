"""Settings completed from Secrets Manager (moto), for functions configured as the CDK app
configures them (their environment read from the synthesized ``template.yaml``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import yaml
from moto import mock_aws
from sqlalchemy.engine import make_url

from shared.adapters.aws_secrets_source import SecretsManagerReader
from shared.domains import DOMAIN_CAPABILITIES
from shared.errors import ConfigurationError
from shared.settings import Settings
from tests.fixtures.aws import REGION

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
PROXY_HOST = "quarry-dev-db-proxy.proxy-abc.eu-west-1.rds.amazonaws.com"
DB_PASSWORD = "db-pass/with:odd@chars"
CACHE_PASSWORD = "cache-password-0123456789abcdef"
JWT_SECRET = "j" * 64
PEPPER = "p" * 64
MILVUS_TOKEN = "milvus-token"
# What each secret holds, as the stack creates it (the RDS one as RDS writes it).
SECRET_VALUES: dict[str, str] = {
    "QUARRY_AWS__DB_SECRET_ARN": json.dumps(
        {
            "engine": "postgres",
            "username": "quarry",
            "password": DB_PASSWORD,
            "host": "quarry-dev-db.cluster-abc.eu-west-1.rds.amazonaws.com",
            "port": 5432,
            "dbname": "quarry",
            "dbClusterIdentifier": "quarry-dev-db",
        }
    ),
    "QUARRY_AWS__REDIS_SECRET_ARN": json.dumps({"username": "quarry", "password": CACHE_PASSWORD}),
    "QUARRY_AWS__MILVUS_SECRET_ARN": json.dumps(
        {"uri": "https://milvus.example:443", "token": MILVUS_TOKEN}
    ),
    "QUARRY_AWS__JWT_SECRET_ARN": json.dumps({"jwt_secret": JWT_SECRET}),
    "QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN": PEPPER,  # the generated string itself
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, aws_credentials: None) -> Iterator[Any]:
    for name in [n for n in os.environ if n.startswith("QUARRY_")]:
        monkeypatch.delenv(name)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def put_secret(client: Any, name: str, value: str) -> str:
    arn: str = client.create_secret(Name=name, SecretString=value)["ARN"]
    return arn


def _resolve(value: Any) -> str:
    """A template value with its intrinsic functions replaced by stand-ins."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_resolve(part) for part in parts)
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        if attribute == "Endpoint":  # the RDS Proxy
            return PROXY_HOST
        if attribute == "Endpoint.Port":
            return "6379"
        return f"{logical_id.lower()}-{attribute.lower()}.example"
    if "Ref" in value:
        return {"AWS::Region": REGION, "AWS::AccountId": "123456789012"}.get(
            value["Ref"], value["Ref"].lower()
        )
    raise AssertionError(f"unexpected template value {value!r}")


def cdk_environments(client: Any) -> dict[str, dict[str, str]]:
    """Each domain function's environment as the synthesized stack sets it; every secret ARN
    points at a secret shaped as the stack (or RDS) creates it."""
    template = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    arns: dict[str, str] = {}
    environments: dict[str, dict[str, str]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        if "QUARRY_DOMAIN" not in variables:
            continue
        env = {}
        for name, value in variables.items():
            if name in SECRET_VALUES:
                if name not in arns:
                    arns[name] = put_secret(client, name.lower(), SECRET_VALUES[name])
                env[name] = arns[name]
            else:
                env[name] = _resolve(value)
        environments[env["QUARRY_DOMAIN"]] = env
    return environments


def load(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_function_configured_as_the_stack_does_passes_the_aws_checks(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    environments = cdk_environments(aws)
    assert set(environments) == set(DOMAIN_CAPABILITIES)
    for domain, env in environments.items():
        with monkeypatch.context() as patch:
            settings = load(patch, env)
        assert settings.profile == "aws"
        assert settings.domain == domain
        url = make_url(settings.database_url)
        assert (url.host, url.username, url.password) == (PROXY_HOST, "quarry", DB_PASSWORD)
        assert url.query["sslmode"] == "require"
        redis = urlsplit(settings.cache.redis_url or "")
        assert (redis.scheme, redis.username, redis.password) == (
            "rediss",
            "quarry",
            CACHE_PASSWORD,
        )
        token = settings.vectors.milvus_token
        if "vectors" in DOMAIN_CAPABILITIES[domain]:
            assert token is not None
            assert token.get_secret_value() == MILVUS_TOKEN
            assert settings.vectors.milvus_uri == "https://milvus.example:443"
        else:
            assert token is None
        if domain == "auth":
            assert settings.auth.jwt_secret.get_secret_value() == JWT_SECRET
            assert settings.auth.api_key_pepper.get_secret_value() == PEPPER
            assert settings.auth.secrets_cipher == "kms"
        assert settings.aws.gpu_endpoint_name == "quarry-dev-gpu"
        component = "quarry-dev-gpu-models" if "models" in DOMAIN_CAPABILITIES[domain] else None
        assert settings.aws.gpu_inference_component == component  # dev scales to zero


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("QUARRY_AWS__JWT_SECRET_ARN", "JWT_SECRET"),
        ("QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN", "API_KEY_PEPPER"),
    ],
)
def test_without_its_secrets_a_function_does_not_start(
    aws: Any, monkeypatch: pytest.MonkeyPatch, variable: str, setting: str
) -> None:
    env = cdk_environments(aws)["auth"]
    del env[variable]
    with pytest.raises(ValueError, match=f"{setting} must not be the development default"):
        load(monkeypatch, env)


@pytest.mark.parametrize(
    "value",
    [PEPPER, json.dumps({"api_key_pepper": PEPPER}), f" {json.dumps({'api_key_pepper': PEPPER})}"],
)
def test_the_pepper_secret_is_the_pepper_or_a_json_object_holding_it(
    aws: Any, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    arn = put_secret(aws, "pepper", value)
    settings = load(monkeypatch, {"QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN": arn})
    assert settings.auth.api_key_pepper.get_secret_value() == PEPPER


def test_iam_database_authentication_reads_no_password(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cdk_environments(aws)["query"]
    env["QUARRY_AWS__DB_IAM_AUTH"] = "true"
    env["QUARRY_AWS__DB_SECRET_ARN"] = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:gone"
    settings = load(monkeypatch, env)  # the (missing) DB secret is not read
    url = make_url(settings.database_url)
    assert (url.host, url.username, url.password) == (PROXY_HOST, "quarry", None)


def test_without_a_url_the_database_secret_names_the_server(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = put_secret(aws, "db", SECRET_VALUES["QUARRY_AWS__DB_SECRET_ARN"])
    settings = load(monkeypatch, {"QUARRY_AWS__DB_SECRET_ARN": arn})
    url = make_url(settings.database_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == (
        "quarry-dev-db.cluster-abc.eu-west-1.rds.amazonaws.com",
        5432,
        "quarry",
    )
    assert url.password == DB_PASSWORD
    assert url.query["sslmode"] == "require"


def test_a_missing_secret_is_a_configuration_error_naming_its_arn(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:quarry-dev/jwt-signing-key"
    with pytest.raises(ConfigurationError) as caught:
        load(monkeypatch, {"QUARRY_AWS__JWT_SECRET_ARN": arn})
    assert caught.value.code == "secret_unreadable"
    assert arn in caught.value.message
    assert caught.value.details == {"secret_arn": arn, "reason": "ResourceNotFoundException"}


@pytest.mark.parametrize(
    ("variable", "value", "why"),
    [
        ("QUARRY_AWS__JWT_SECRET_ARN", "hunter2-hunter2-hunter2-hunter2-x", "not JSON"),
        ("QUARRY_AWS__JWT_SECRET_ARN", json.dumps(["hunter2"]), "not a JSON object"),
        ("QUARRY_AWS__JWT_SECRET_ARN", json.dumps({"api_key_pepper": "hunter2" * 8}), "jwt_secret"),
        ("QUARRY_AWS__JWT_SECRET_ARN", json.dumps({"jwt_secret": "hunter2"}), "shorter than 32"),
        ("QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN", "hunter2-hunter2", "shorter than 32 bytes"),
        ("QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN", '{"api_key_pepper": "hunter2', "not JSON"),
        (
            "QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN",
            json.dumps({"jwt_secret": "hunter2" * 8}),
            "'api_key_pepper'",
        ),
        (
            "QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN",
            json.dumps({"api_key_pepper": "hunter2"}),
            "shorter than 32 bytes",
        ),
        ("QUARRY_AWS__DB_SECRET_ARN", json.dumps({"username": "quarry"}), "'password'"),
        ("QUARRY_AWS__REDIS_SECRET_ARN", json.dumps({"username": "hunter2"}), "'password'"),
        ("QUARRY_AWS__MILVUS_SECRET_ARN", json.dumps({"uri": "https://hunter2"}), "'token'"),
    ],
)
def test_a_malformed_secret_names_its_arn_and_never_its_value(
    aws: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, why: str
) -> None:
    arn = put_secret(aws, "malformed", value)
    env = {
        variable: arn,
        "QUARRY_DB__URL": f"postgresql+psycopg://quarry@{PROXY_HOST}:5432/quarry",
        "QUARRY_CACHE__REDIS_URL": "rediss://quarry@cache.example:6379",
    }
    with pytest.raises(ConfigurationError) as caught:
        load(monkeypatch, env)
    assert caught.value.code == "secret_malformed"
    assert arn in caught.value.message
    assert why in caught.value.message
    assert "hunter2" not in str(caught.value) + repr(caught.value.details)
    assert caught.value.__cause__ is None


def test_the_redis_password_needs_a_tls_url(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    arn = put_secret(aws, "cache", SECRET_VALUES["QUARRY_AWS__REDIS_SECRET_ARN"])
    env = {"QUARRY_AWS__REDIS_SECRET_ARN": arn, "QUARRY_CACHE__REDIS_URL": "redis://cache:6379"}
    with pytest.raises(ConfigurationError, match="rediss://"):
        load(monkeypatch, env)


def test_keyword_arguments_win_over_the_secrets(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QUARRY_AWS__JWT_SECRET_ARN", "QUARRY_AWS__API_KEY_PEPPER_SECRET_ARN"):
        monkeypatch.setenv(name, put_secret(aws, name.lower(), SECRET_VALUES[name]))
    settings = Settings(_env_file=None, auth={"jwt_secret": "k" * 40})  # type: ignore[call-arg]
    assert settings.auth.jwt_secret.get_secret_value() == "k" * 40
    assert settings.auth.api_key_pepper.get_secret_value() == PEPPER  # not given: the secret's


def test_each_secret_is_read_once(aws: Any) -> None:
    arn = put_secret(aws, "jwt", SECRET_VALUES["QUARRY_AWS__JWT_SECRET_ARN"])
    calls: list[str] = []
    original = aws.get_secret_value

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs["SecretId"])
        return original(**kwargs)

    aws.get_secret_value = counting
    reader = SecretsManagerReader(aws)
    assert reader.read_json(arn) == reader.read_json(arn)
    assert calls == [arn]


def test_secrets_need_a_region(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:quarry-dev/cache"
    with pytest.raises(ConfigurationError, match="QUARRY_AWS__REGION"):
        load(monkeypatch, {"QUARRY_AWS__REDIS_SECRET_ARN": arn})
