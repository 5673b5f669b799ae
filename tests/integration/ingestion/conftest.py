"""A container on embedded defaults (or PostgreSQL), migrated, with one KB; what the KB holds,
and the ingestion saga with a failure injected."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from shared.container import Container
from shared.db.migrate import upgrade
from shared.db.models import KnowledgeBase
from shared.errors import DependencyUnavailable
from shared.kb.service import KbSpec
from shared.sagas.definition import SagaDefinition, SagaState, StepAction
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


async def snapshot(container: Container, tenant: uuid.UUID, kb: KnowledgeBase) -> dict[str, Any]:
    rows = await container.kb_repository.all_chunk_keys(tenant, kb.id)
    vectors = await container.vector_store.list_chunks(
        container.kb_service.space(kb), tenant, kb.id
    )
    return {
        "rows": sorted(str(r[0]) for r in rows),
        "vectors": sorted(str(v.chunk_id) for v in vectors),
    }


def failing_at(definition: SagaDefinition, step_name: str) -> SagaDefinition:
    """The same saga, except that ``step_name`` does its work and then fails."""

    def wrap(action: StepAction) -> StepAction:
        async def failing(state: SagaState) -> SagaState | None:
            await action(state)
            raise DependencyUnavailable(f"injected failure in {step_name}")

        return failing

    steps = tuple(
        dataclasses.replace(
            s, action=wrap(s.action), retry=dataclasses.replace(s.retry, attempts=1)
        )
        if s.name == step_name
        else s
        for s in definition.steps
    )
    return dataclasses.replace(definition, steps=steps)
