"""Every definition in examples/workflows validates; those that need no network, KB or LLM
run end to end on the container's real node executors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.auth.rbac import operator_principal
from shared.container import Container
from shared.db.migrate import upgrade
from shared.settings import Settings

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "workflows"
SOURCES = {path.stem: path.read_text() for path in sorted(EXAMPLES.glob("*.yaml"))}


@pytest.fixture
async def container(make_settings: Callable[..., Settings]) -> AsyncIterator[Container]:
    settings = make_settings()
    upgrade(settings.database_url)
    built = Container(settings)
    try:
        yield built
    finally:
        await built.aclose()


def test_there_are_examples() -> None:
    assert len(SOURCES) >= 3


@pytest.mark.parametrize("name", SOURCES)
async def test_example_validates(container: Container, name: str) -> None:
    definition = container.workflow_service.validate(SOURCES[name])
    assert definition.name == name


async def run_example(container: Container, name: str, run_input: dict[str, Any]) -> Any:
    tenant_id = await container.kb_repository.ensure_tenant("examples")
    actor = operator_principal(tenant_id)
    service = container.workflow_service
    workflow = await service.ensure_version(actor, SOURCES[name])
    return actor, await service.start_run(actor, workflow.name, run_input, wait_s=None)


async def test_research_digest_runs(container: Container) -> None:
    texts = ["Glaciers shrink. Ask ice@example.org.", "Snow cover fell by a tenth."]
    _, run = await run_example(container, "research-digest", {"texts": texts})
    assert run.status == "succeeded", run.error_message
    assert run.output["digest"] == "2 texts, 12 words; contacts: ice@example.org"
    assert [entry["words"] for entry in run.output["per_text"]] == [6, 6]


async def test_ticket_triage_asks_before_urgent_refunds(container: Container) -> None:
    urgent = {"subject": "Refund", "body": "Please refund 120 EUR. URGENT", "amount": 120}
    actor, run = await run_example(container, "ticket-triage", urgent)
    assert run.status == "waiting_approval"
    approved = await container.workflow_service.approve(actor, run.id, wait_s=None)
    assert approved.status == "succeeded"
    assert approved.output["ticket"]["approved_by"] == actor.subject
    _, calm = await run_example(container, "ticket-triage", {"subject": "Q", "body": "hello"})
    assert calm.output == {"ticket": {"subject": "Q", "urgent": False, "approved_by": None}}
