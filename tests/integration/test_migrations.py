"""alembic upgrade head -> downgrade base -> upgrade head, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db.migrate import downgrade, upgrade
from shared.db.models import Base

pytestmark = pytest.mark.integration


async def table_names(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    expected = set(Base.metadata.tables)
    upgrade(database_url)
    assert expected <= asyncio.run(table_names(database_url))
    downgrade(database_url)
    assert asyncio.run(table_names(database_url)) <= {"alembic_version"}
    upgrade(database_url)
    assert expected <= asyncio.run(table_names(database_url))


def test_models_and_migrations_agree(database_url: str) -> None:
    """Autogenerate finds nothing to do: the migrations build exactly the models' schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    upgrade(database_url)

    async def diff() -> list[object]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(
                        MigrationContext.configure(sync, opts={"compare_type": True}),
                        Base.metadata,
                    )
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []
