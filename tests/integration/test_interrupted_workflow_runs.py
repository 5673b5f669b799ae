"""The local server's start marks workflow runs the last server left ``running`` as
``failed`` (``interrupted``), so that they can be resumed, unless
``QUARRY_WORKFLOWS__RECOVER_INTERRUPTED_RUNS_ON_START`` is off."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from functions.local_app import create_local_app
from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.db.models import Tenant, WorkflowRun
from shared.db.workflow_repository import WorkflowRepository
from shared.settings import Settings
from tests.integration.workflows.conftest import POOL, record, workflow

pytestmark = pytest.mark.integration


def left_running(settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """A run the previous server was executing when it stopped: the tenant and the run."""
    upgrade(settings.database_url)

    async def seed() -> tuple[uuid.UUID, uuid.UUID]:
        database = Database(settings.database_url, POOL)
        try:
            async with database.session() as session:
                tenant = Tenant(name="interrupted")
                session.add(tenant)
            repository = WorkflowRepository(database)
            stored = await repository.add_version(
                tenant.id, "flow", workflow(record("a")), description="", created_by=None, new=True
            )
            run = await repository.create_run(tenant.id, stored, {}, started_by=None)
            await repository.save_node(
                tenant.id, run.id, "a", node_id="a", node_type="tool", status="running"
            )
            return tenant.id, run.id
        finally:
            await database.aclose()

    return asyncio.run(seed())


def run_now(settings: Settings, tenant_id: uuid.UUID, run_id: uuid.UUID) -> WorkflowRun:
    async def read() -> WorkflowRun:
        database = Database(settings.database_url, POOL)
        try:
            return await WorkflowRepository(database).get_run(tenant_id, run_id)
        finally:
            await database.aclose()

    return asyncio.run(read())


@pytest.mark.parametrize(("recover", "status"), [(True, "failed"), (False, "running")])
def test_the_local_server_start_marks_runs_left_running_interrupted(
    make_settings: Callable[..., Settings], recover: bool, status: str
) -> None:
    settings = make_settings(
        # No model to load at start: none is needed here.
        models={"provider": "gpu_endpoint", "gpu_endpoint_url": "http://127.0.0.1:9"},
        workflows={"recover_interrupted_runs_on_start": recover},
    )
    tenant_id, run_id = left_running(settings)
    with TestClient(create_local_app(settings)):
        pass
    run = run_now(settings, tenant_id, run_id)
    assert run.status == status
    assert run.error_code == ("interrupted" if recover else None)
