"""A container on embedded defaults (or PostgreSQL), migrated, with one KB."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from shared.container import Container
from shared.db.migrate import upgrade
from shared.kb.service import KbSpec
from shared.settings import Settings


@pytest.fixture
async def container(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[Container]:
    settings = make_settings(db={"url": database_url})
    upgrade(settings.database_url)
    c = Container(settings)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def tenant(container: Container) -> object:
    import uuid

    return await container.kb_repository.ensure_tenant(f"tenant-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def kb(container: Container, tenant: object) -> object:
    import uuid

    assert isinstance(tenant, uuid.UUID)
    return await container.kb_service.create(
        tenant, KbSpec(name="handbook", chunk_size_tokens=64, chunk_overlap_tokens=8)
    )
