"""Fixtures shared by every test layer.

PostgreSQL and Redis tests talk to real servers (127.0.0.1:5432 and :6379 by default; override
with QUARRY_TEST_POSTGRES_ADMIN_URL / QUARRY_TEST_REDIS_URL). Without a server they skip, except
under CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings, get_settings
from tests.fixtures.aws import use_fake_credentials

POSTGRES_ADMIN_URL = os.environ.get(
    "QUARRY_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("QUARRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"
# argon2id at its minimum cost: tests hash many passwords, and the strength is not under test.
FAST_PASSWORD_HASHING = {
    "password_time_cost": 1,
    "password_memory_kib": 8192,
    "password_parallelism": 1,
}

# Tests must never read a developer's .env or QUARRY_* variables by accident.
for _name in [
    n for n in os.environ if n.startswith("QUARRY_") and not n.startswith("QUARRY_TEST_")
]:
    del os.environ[_name]


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} is not reachable: {error}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: server-backed tests must run)")
    pytest.skip(message)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on embedded defaults in a fresh data dir; keyword overrides as in the model."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data"}
        values["auth"] = {**FAST_PASSWORD_HASHING, **overrides.pop("auth", {})}
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and ``tests.fixtures.aws.REGION`` as the default region."""
    use_fake_credentials(monkeypatch)


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (async psycopg URL); dropped after."""
    import psycopg

    name = f"quarry_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
        raise
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs a test on both databases: a SQLite file and the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{(tmp_path / 'test.db').as_posix()}"
    return str(request.getfixturevalue("postgres_url"))


LAYER_MARKERS = {"unit", "integration", "infra", "e2e"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries its layer's marker (from its folder), so `-m unit` etc. select by
    layer even where a module forgot its `pytestmark`."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "tests" in parts:
            layer = parts[parts.index("tests") + 1]
            if layer in LAYER_MARKERS:
                item.add_marker(getattr(pytest.mark, layer))
