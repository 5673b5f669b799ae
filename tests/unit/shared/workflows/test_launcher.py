"""The Step Functions launcher's own decisions, on fakes of its ports: execution names, what a
rejection sends with the task token (what ``workflow_end`` reads back), and deleting machines.
The launcher with the real adapters on moto: tests/integration/workflows/
test_service_stepfunctions.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from typing import Any

import pytest

from shared.db.models import WorkflowNodeRun, WorkflowRun
from shared.errors import Conflict, DependencyUnavailable
from shared.workflows.engine import APPROVAL_REJECTED, NodeFailed
from shared.workflows.launcher import StepFunctionsWorkflowLauncher, execution_name
from shared.workflows.task import failure_of

RUN_ID = uuid.UUID("00000000-0000-4000-8000-00000000000a")
TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")


class Tokens:
    def __init__(self) -> None:
        self.failed: list[dict[str, str]] = []

    async def succeed(self, token: str, output: Any) -> None:
        raise AssertionError("not under test")

    async def fail(self, token: str, *, error: str, cause: str) -> None:
        self.failed.append({"token": token, "Error": error, "Cause": cause})


class Machines:
    """Deleting fails as an unavailable Step Functions does."""

    def __init__(self) -> None:
        self.deleted: list[tuple[str, list[int]]] = []

    async def delete(self, tenant_id: uuid.UUID, name: str, versions: Iterable[int]) -> None:
        self.deleted.append((name, list(versions)))
        raise DependencyUnavailable("down", code="stepfunctions_unavailable")


def launcher(tokens: Tokens | None = None, machines: Machines | None = None) -> Any:
    repository: Any = None  # not reached by what these tests do
    state_machines: Any = machines or Machines()  # deletes only
    return StepFunctionsWorkflowLauncher(repository, state_machines, tokens or Tokens())


def approval(token: str | None) -> WorkflowNodeRun:
    return WorkflowNodeRun(
        run_id=RUN_ID, tenant_id=TENANT, node_key="check", node_id="check", task_token=token
    )


def run(resumes: int) -> WorkflowRun:
    return WorkflowRun(id=RUN_ID, tenant_id=TENANT, resumes=resumes, input={})


@pytest.mark.parametrize(
    ("resumes", "name"), [(0, str(RUN_ID)), (1, f"{RUN_ID}-1"), (12, f"{RUN_ID}-12")]
)
def test_each_resume_is_an_execution_of_its_own(resumes: int, name: str) -> None:
    assert execution_name(run(resumes)) == name


async def test_a_rejection_sends_what_the_run_end_reads_back() -> None:
    tokens = Tokens()
    failure = NodeFailed("check", APPROVAL_REJECTED, "rejected by user:1: too costly")
    await launcher(tokens).reject(run(0), None, approval("token-1"), failure)
    [sent] = tokens.failed
    assert (sent["token"], sent["Error"]) == ("token-1", APPROVAL_REJECTED)
    read = failure_of(sent)
    assert (read.node_key, read.code, read.message) == (
        "check",
        APPROVAL_REJECTED,
        "rejected by user:1: too costly",
    )


async def test_an_approval_without_a_token_waits_for_no_machine() -> None:
    failure = NodeFailed("check", APPROVAL_REJECTED, "no")
    with pytest.raises(Conflict) as refused:
        await launcher().reject(run(0), None, approval(None), failure)
    assert refused.value.code == "task_not_waiting"


async def test_machines_left_behind_by_a_delete_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machines = Machines()
    with caplog.at_level(logging.WARNING):
        await launcher(machines=machines).discard(TENANT, "flow", [1, 2])
    assert machines.deleted == [("flow", [1, 2])]
    assert "left behind" in caplog.text
