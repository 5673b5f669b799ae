"""IAM database authentication: a token signed for the URL's host and user, made for every new
connection of the engine and of migrations (PostgreSQL here trusts any password)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.adapters.rds_iam_auth import RdsIamAuthToken
from shared.container import database_password
from shared.db.engine import Database, PoolConfig
from shared.db.migrate import upgrade
from shared.errors import ConfigurationError
from shared.settings import Settings

pytestmark = pytest.mark.integration

POOL = PoolConfig(
    size=2, max_overflow=0, recycle_s=3600, timeout_s=5, pre_ping=False, warn_utilization=1.0
)
PROXY_URL = "postgresql+psycopg://quarry@proxy.example.com:5432/quarry?sslmode=require"


class CountingPassword:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"token-{self.calls}"


@pytest.mark.usefixtures("aws_credentials")
def test_the_token_is_signed_for_the_urls_host_port_and_user() -> None:
    token = RdsIamAuthToken(PROXY_URL, region="eu-west-1")()
    parts = urlsplit(f"https://{token}")
    query = parse_qs(parts.query)
    assert (parts.hostname, parts.port) == ("proxy.example.com", 5432)
    assert query["Action"] == ["connect"]
    assert query["DBUser"] == ["quarry"]
    assert "eu-west-1/rds-db/aws4_request" in query["X-Amz-Credential"][0]


def test_a_url_without_a_user_cannot_use_iam_auth() -> None:
    with pytest.raises(ConfigurationError, match="host and a user"):
        RdsIamAuthToken("postgresql+psycopg://proxy.example.com/quarry", region="eu-west-1")


@pytest.mark.usefixtures("aws_credentials")
def test_the_settings_choose_the_token(make_settings: Callable[..., Settings]) -> None:
    assert database_password(make_settings(db={"url": PROXY_URL})) is None
    iam = make_settings(db={"url": PROXY_URL}, aws={"db_iam_auth": True, "region": "eu-west-1"})
    assert isinstance(database_password(iam), RdsIamAuthToken)


async def test_every_new_connection_gets_a_fresh_password(postgres_url: str) -> None:
    password = CountingPassword()
    db = Database(postgres_url, POOL, password=password)
    try:
        await db.ping()
        await db.ping()  # the pooled connection: no new password
        assert password.calls == 1
        async with db.engine.connect() as first, db.engine.connect() as second:
            await first.exec_driver_sql("SELECT 1")
            await second.exec_driver_sql("SELECT 1")
        assert password.calls == 2
    finally:
        await db.aclose()


def test_migrations_connect_with_the_password_too(postgres_url: str) -> None:
    password = CountingPassword()
    upgrade(postgres_url, password=password)
    assert password.calls >= 1
