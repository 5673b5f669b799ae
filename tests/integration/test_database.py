from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import func, select

from shared.db.engine import Database, PoolConfig
from shared.db.migrate import upgrade
from shared.db.models import Tenant

pytestmark = pytest.mark.integration

POOL = PoolConfig(
    size=2, max_overflow=1, recycle_s=3600, timeout_s=5, pre_ping=True, warn_utilization=0.5
)


async def test_session_commits_and_rolls_back(database_url: str) -> None:
    upgrade(database_url)
    db = Database(database_url, POOL)
    name = f"t-{uuid.uuid4().hex[:8]}"
    try:
        async with db.session() as session:
            session.add(Tenant(name=name))

        async def add_then_fail() -> None:
            async with db.session() as session:
                session.add(Tenant(name=name + "-rolled-back"))
                await session.flush()
                raise RuntimeError("abort")

        with pytest.raises(RuntimeError):
            await add_then_fail()
        async with db.session() as session:
            names = set(
                await session.scalars(select(Tenant.name).where(Tenant.name.like(f"{name}%")))
            )
        assert names == {name}
        await db.ping()
    finally:
        await db.aclose()


async def test_postgres_pool_usage_is_exposed_and_warns_when_busy(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade(postgres_url)
    db = Database(postgres_url, POOL)
    try:
        assert db.dialect == "postgresql"
        async with db.engine.connect() as first, db.engine.connect() as second:
            await first.execute(select(1))
            await second.execute(select(1))
            usage = db.pool_usage()
            assert usage is not None
            assert usage.checked_out == 2
            assert usage.capacity == 3
            assert usage.utilization == pytest.approx(2 / 3)
            with caplog.at_level(logging.WARNING, logger="shared.db.engine"):
                async with db.session() as session:
                    await session.scalar(select(func.count()).select_from(Tenant))
        assert any("pool above" in r.getMessage() for r in caplog.records)
        usage = db.pool_usage()
        assert usage is not None
        assert usage.checked_out == 0
        assert usage.waits >= 3
    finally:
        await db.aclose()


async def test_sqlite_has_no_pool_to_report(tmp_path: pytest.TempPathFactory) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/x/y.db", POOL)  # folder created on demand
    try:
        await db.ping()
        assert db.pool_usage() is None
    finally:
        await db.aclose()
