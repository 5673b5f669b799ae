"""IAM database authentication: a fresh token as the password of every new connection.

``rds.generate_db_auth_token`` signs the token locally (SigV4, no AWS call) from the function's
credentials; it is valid for 15 minutes, and RDS Proxy / Aurora check it only when a connection
opens, so pooled connections outlive it. ``Database`` calls this once per new connection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url

from shared.errors import ConfigurationError

DEFAULT_PORT = 5432


class RdsIamAuthToken:
    """``url``: the database URL (its host, port and user sign the token; it has no password).
    ``client``: a boto3 RDS client, built from ``region`` when None."""

    def __init__(self, url: str, *, region: str | None = None, client: Any = None) -> None:
        parsed = make_url(url)
        if not parsed.host or not parsed.username:
            raise ConfigurationError(
                "IAM database authentication needs a host and a user in QUARRY_DB__URL"
            )
        self._host = parsed.host
        self._port = parsed.port or DEFAULT_PORT
        self._user = parsed.username
        if client is None:
            import boto3

            client = boto3.client("rds", region_name=region)
        self._client: Any = client

    def __call__(self) -> str:
        token: str = self._client.generate_db_auth_token(
            DBHostname=self._host, Port=self._port, DBUsername=self._user
        )
        return token
