"""The workflow service and repository on both databases: versions, tenant isolation, RBAC,
audit entries, input limits, usage figures and runs interrupted by a stopped process."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.auth.rbac import Role
from shared.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from tests.integration.workflows.conftest import Harness, record, workflow

pytestmark = pytest.mark.integration

SOURCE = workflow(record("a", undo=False), name="greet", input={"who": {"type": "string"}})


async def test_definitions_are_versioned(harness: Harness) -> None:
    service, owner = harness.service, harness.owner
    first = await service.create(owner, SOURCE)
    assert (first.name, first.version, first.definition["version"]) == ("greet", 1, 1)
    with pytest.raises(Conflict) as exists:
        await service.create(owner, SOURCE)
    assert exists.value.code == "workflow_exists"
    second = await service.update(owner, "greet", {**SOURCE, "description": "v2"})
    assert second.version == 2
    assert (await service.get(owner, "greet")).version == 2
    assert (await service.get(owner, "greet", 1)).description == ""
    assert [w.version for w in await service.list_workflows(owner)] == [2]
    with pytest.raises(InvalidInput) as mismatch:
        await service.update(owner, "other", SOURCE)
    assert mismatch.value.code == "workflow_name_mismatch"
    with pytest.raises(NotFound):
        await service.update(owner, "nope", {**SOURCE, "name": "nope"})
    assert harness.audit.actions() == ["workflow.create", "workflow.update"]


async def test_ensure_version_reuses_an_unchanged_definition(harness: Harness) -> None:
    service, owner = harness.service, harness.owner
    first = await service.ensure_version(owner, SOURCE)
    same = await service.ensure_version(owner, SOURCE)
    assert same.id == first.id
    changed = await service.ensure_version(owner, {**SOURCE, "description": "new"})
    assert changed.version == 2


async def test_runs_pin_their_version_and_deleting_needs_no_active_run(
    harness: Harness,
) -> None:
    service, owner = harness.service, harness.owner
    await service.create(owner, SOURCE)
    run = await service.start_run(owner, "greet", {"who": "x"}, wait_s=None)
    await service.update(owner, "greet", {**SOURCE, "description": "v2"})
    assert (run.workflow_version, run.status) == (1, "succeeded")
    approval = workflow({"id": "ok", "type": "approval"}, name="gate")
    await service.create(owner, approval)
    waiting = await service.start_run(owner, "gate", {}, wait_s=None)
    with pytest.raises(Conflict) as active:
        await service.delete(owner, "gate")
    assert active.value.code == "workflow_has_active_runs"
    await service.cancel(owner, waiting.id)
    await service.delete(owner, "gate")
    await service.delete(owner, "greet")
    with pytest.raises(NotFound):
        await service.get_run(owner, run.id)
    assert "workflow.delete" in harness.audit.actions()


async def test_run_input_is_validated_and_bounded(make_harness: object) -> None:
    harness: Harness = await make_harness(max_input_bytes=50)  # type: ignore[operator]
    await harness.service.create(harness.owner, SOURCE)
    with pytest.raises(InvalidInput) as wrong:
        await harness.service.start_run(harness.owner, "greet", {"who": 1})
    assert wrong.value.code == "invalid_workflow_input"
    with pytest.raises(PayloadTooLarge) as large:
        await harness.service.start_run(harness.owner, "greet", {"who": "x" * 100})
    assert large.value.code == "input_too_large"
    with pytest.raises(NotFound) as missing:
        await harness.service.start_run(harness.owner, "nope", {})
    assert missing.value.code == "workflow_not_found"


async def test_agents_cannot_run_without_an_llm(harness: Harness) -> None:
    agent = workflow({"id": "think", "type": "agent", "prompt": "hi"}, name="agentic")
    with pytest.raises(InvalidInput) as refused:
        await harness.service.create(harness.owner, agent)
    codes = [e["code"] for e in refused.value.details["errors"]]
    assert codes == ["llm_not_configured"]


async def test_tenant_isolation(harness: Harness) -> None:
    service, owner = harness.service, harness.owner
    await service.create(owner, SOURCE)
    run = await service.start_run(owner, "greet", {"who": "x"}, wait_s=None)
    other = harness.principal(tenant_id=await harness.new_tenant())
    with pytest.raises(NotFound) as hidden:
        await service.get_run(other, run.id)
    assert hidden.value.code == "run_not_found"
    for attempt in (service.cancel, service.resume, service.approve, service.reject):
        with pytest.raises(NotFound):
            await attempt(other, run.id)
    with pytest.raises(NotFound):
        await service.get(other, "greet")
    with pytest.raises(NotFound):
        await service.start_run(other, "greet", {"who": "x"})
    assert await service.list_runs(other) == []
    assert await service.list_workflows(other) == []
    assert (await service.stats(other, window_hours=24))["runs"] == 0
    # The repository itself filters on the tenant, whatever the caller passes.
    repository = harness.repository
    with pytest.raises(NotFound):
        await repository.get_run(other.tenant_id, run.id)
    assert await repository.node_runs(other.tenant_id, run.id) == []
    assert not await repository.transition_run(
        other.tenant_id, run.id, from_statuses=["succeeded"], to_status="running"
    )
    assert await repository.run_status(owner.tenant_id, run.id) == "succeeded"
    workflow_row = await repository.get_workflow(owner.tenant_id, "greet")
    with pytest.raises(NotFound):
        await repository.create_run(other.tenant_id, workflow_row, {}, started_by=None)


async def test_permissions(harness: Harness) -> None:
    service = harness.service
    await service.create(harness.owner, SOURCE)
    run = await service.start_run(harness.owner, "greet", {"who": "x"}, wait_s=None)
    viewer = harness.principal(Role.VIEWER)
    assert (await service.get_run(viewer, run.id)).run.id == run.id
    assert len(await service.list_runs(viewer, workflow="greet")) == 1
    with pytest.raises(Forbidden):
        await service.start_run(viewer, "greet", {"who": "x"})
    with pytest.raises(Forbidden):
        await service.create(viewer, {**SOURCE, "name": "other"})
    with pytest.raises(Forbidden):
        await service.cancel(viewer, run.id)
    member = harness.principal(Role.MEMBER)
    await service.start_run(member, "greet", {"who": "y"}, wait_s=None)
    read_only = harness.principal(Role.OWNER)
    scoped = type(read_only)(
        "api_key",
        read_only.tenant_id,
        Role.OWNER,
        frozenset({"workflows:read"}),
        api_key_id=uuid.uuid4(),
    )
    with pytest.raises(Forbidden):
        await service.start_run(scoped, "greet", {"who": "x"})


async def test_runs_are_listed_and_audited(harness: Harness) -> None:
    service, owner = harness.service, harness.owner
    await service.create(owner, SOURCE)
    harness.tools.fail_at = {"a"}
    failed = await service.start_run(owner, "greet", {"who": "x"}, wait_s=None)
    harness.tools.fail_at = set()
    ok = await service.start_run(owner, "greet", {"who": "y"}, wait_s=None)
    runs = await service.list_runs(owner, workflow="greet")
    assert {r.id for r in runs} == {failed.id, ok.id}
    assert [r.id for r in await service.list_runs(owner, status="failed")] == [failed.id]
    with pytest.raises(InvalidInput):
        await service.list_runs(owner, status="bogus")
    with pytest.raises(NotFound):
        await service.list_runs(owner, workflow="nope")
    starts = [e for e in harness.audit.events if e.action == "workflow_run.start"]
    assert len(starts) == 2
    assert starts[0].principal == owner.subject
    assert starts[0].resource == f"workflow_run:{failed.id}"


async def test_stats(harness: Harness) -> None:
    service, owner = harness.service, harness.owner
    await service.create(owner, SOURCE)
    await service.create(owner, workflow(record("b", undo=False), name="other"))
    for _ in range(3):
        await service.start_run(owner, "greet", {"who": "x"}, wait_s=None)
    harness.tools.fail_at = {"b"}
    await service.start_run(owner, "other", {}, wait_s=None)
    stats = await service.stats(owner, window_hours=24)
    assert stats["runs"] == 4
    assert stats["by_status"] == {"failed": 1, "succeeded": 3}
    assert stats["success_rate"] == 0.75
    assert stats["p50_ms"] is not None
    assert stats["p95_ms"] >= stats["p50_ms"]
    assert stats["workflows"]["greet"]["success_rate"] == 1.0
    assert stats["workflows"]["other"]["by_status"] == {"failed": 1}
    assert stats["tool_calls"] == {"record": 3}  # calls that returned a result


async def test_runs_a_stopped_process_left_running_are_marked_interrupted(
    harness: Harness,
) -> None:
    service, owner = harness.service, harness.owner
    harness.tools.hang = {"b"}
    cut_short = workflow(
        record("a", undo=False),
        record("b", undo=False, depends_on=["a"], timeout_s=60),
        name="cut",
    )
    await service.create(owner, cut_short)
    cut = await service.start_run(owner, "cut", {})
    await asyncio.wait_for(harness.tools.hanging.wait(), timeout=10)
    await service.create(owner, workflow({"id": "ok", "type": "approval"}, name="gate"))
    waiting = await service.start_run(owner, "gate", {}, wait_s=None)
    other_tenant = await harness.new_tenant()
    other_workflow = await harness.repository.add_version(
        other_tenant, "theirs", workflow(record("x")), description="", created_by=None, new=True
    )
    theirs = await harness.repository.create_run(other_tenant, other_workflow, {}, started_by=None)
    await service.aclose()  # the process stops: its runs stay running in the database

    assert await service.recover_interrupted_runs() == 2
    details = await service.get_run(owner, cut.id)
    assert (details.run.status, details.run.error_code) == ("failed", "interrupted")
    assert details.run.finished_at is not None
    assert {n.node_key: (n.status, n.error_code) for n in details.nodes} == {
        "a": ("succeeded", None),
        "b": ("failed", "interrupted"),
    }
    assert (await service.get_run(owner, waiting.id)).run.status == "waiting_approval"
    assert (await harness.repository.get_run(other_tenant, theirs.id)).status == "failed"
    assert await service.recover_interrupted_runs() == 0

    harness.tools.hang = set()
    harness.tools.calls.clear()
    resumed = await service.resume(owner, cut.id, wait_s=None)
    assert (resumed.status, resumed.resumes) == ("succeeded", 1)
    assert harness.tools.calls == ["b"]
