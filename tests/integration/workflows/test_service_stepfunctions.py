"""The workflow service with runs on Step Functions (``StepFunctionsWorkflowLauncher`` over the
real adapters): moto executes the compiled state machines and its Lambda invoke runs each task
with the real ``WorkflowTasks`` (the harness of ``test_stepfunctions_moto``). The service starts,
decides, cancels, resumes and deletes as the HTTP API does, on the harness's event loop."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.adapters.stepfunctions_task_tokens import StepFunctionsTaskTokens
from shared.adapters.stepfunctions_workflow_state_machines import (
    StepFunctionsWorkflowStateMachines,
)
from shared.auth.rbac import Principal, Role
from shared.db.models import WorkflowRun
from shared.errors import Conflict, DependencyUnavailable
from shared.observability.metrics import PrometheusMetrics
from shared.workflows.definition import ValidationRules
from shared.workflows.engine import APPROVAL_EXPIRED, APPROVAL_REJECTED
from shared.workflows.launcher import StepFunctionsWorkflowLauncher
from shared.workflows.service import NOT_STARTED, WorkflowService
from shared.workflows.task import WorkflowTasks
from tests.integration.workflows.conftest import AuditLog, ToolBox, record, workflow
from tests.integration.workflows.test_stepfunctions_moto import (
    FUNCTION,
    REGION,
    Executor,
    World,
    approving,
)
from tests.integration.workflows.test_stepfunctions_moto import world as world  # the fixture

pytestmark = pytest.mark.integration

PREFIX = f"arn:aws:states:{REGION}:123456789012:stateMachine:quarry-test-workflow"
WAIT_S = 30.0
T = TypeVar("T")


@dataclass
class Cloud:
    world: World
    service: WorkflowService
    machines: StepFunctionsWorkflowStateMachines
    sfn: Any
    tools: ToolBox
    audit: AuditLog
    owner: Principal
    skew: list[timedelta] = field(default_factory=lambda: [timedelta()])  # the service's clock

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.world.loop.run(coroutine)

    def create(self, source: dict[str, Any]) -> None:
        self.run(self.service.create(self.owner, source))

    def start(self, name: str, run_input: dict[str, Any] | None = None) -> WorkflowRun:
        return self.run(self.service.start_run(self.owner, name, run_input or {}, wait_s=WAIT_S))

    def execution_arn(self, run: WorkflowRun, name: str | None = None) -> str:
        machine = self.machines.arn_of(
            self.world.tenant_id, run.workflow_name, run.workflow_version
        )
        return f"{machine.replace(':stateMachine:', ':execution:')}:{name or run.id}"

    def execution(self, run: WorkflowRun, name: str | None = None) -> dict[str, Any]:
        """The execution once it ended (it ends just after the run is recorded)."""
        arn = self.execution_arn(run, name)
        deadline = time.monotonic() + 30
        while True:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                return described
            time.sleep(0.05)

    def nodes(self, run: WorkflowRun) -> dict[str, str]:
        details = self.run(self.service.get_run(self.owner, run.id))
        return {row.node_key: row.status for row in details.nodes}


@pytest.fixture
def cloud(world: World) -> Cloud:
    tools = ToolBox()
    executor = Executor(tools, {})
    world.current[:] = [
        WorkflowTasks(
            world.repository,
            executor,
            PrometheusMetrics(),
            default_timeout_s=5,
            default_approval_timeout_s=3600,
            max_map_items=100,
        )
    ]
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machines = StepFunctionsWorkflowStateMachines(
        arn_prefix=PREFIX,
        role_arn=world.role_arn,
        function=FUNCTION,
        default_timeout_s=5,
        default_approval_timeout_s=3600,
        client=sfn,
    )
    launcher = StepFunctionsWorkflowLauncher(
        world.repository, machines, StepFunctionsTaskTokens(sfn), poll_interval_s=0.02
    )
    audit = AuditLog()
    skew = [timedelta()]
    service = WorkflowService(
        world.repository,
        launcher,
        audit,
        ValidationRules(tool_names=executor.real.tool_names),
        max_input_bytes=10_000,
        clock=lambda: datetime.now(UTC) + skew[0],
    )
    owner = Principal("user", world.tenant_id, Role.OWNER, frozenset({"*"}), user_id=uuid.uuid4())
    return Cloud(world, service, machines, sfn, tools, audit, owner, skew)


def chain(*names: str, undo: bool = True) -> dict[str, Any]:
    nodes = [record(names[0], undo=undo)]
    nodes += [record(n, undo=undo, depends_on=[p]) for p, n in itertools.pairwise(names)]
    return workflow(*nodes, name="chain", input={"who": {"type": "string", "required": False}})


def test_a_run_starts_as_an_execution_of_its_version_and_succeeds(cloud: Cloud) -> None:
    cloud.create(chain("a", "b"))
    run = cloud.start("chain", {"who": "me"})
    assert (run.status, run.output) == ("succeeded", {"name": "b", "value": None})
    assert cloud.tools.calls == ["a", "b"]
    execution = cloud.execution(run)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["input"]) == {
        "run_id": str(run.id),
        "tenant_id": str(cloud.world.tenant_id),
        "input": {"who": "me"},
    }
    assert cloud.audit.actions() == ["workflow.create", "workflow_run.start"]


def test_approve_sends_the_token_and_the_run_goes_on(cloud: Cloud) -> None:
    cloud.create(approving())
    run = cloud.start("approving")
    assert run.status == "waiting_approval"
    details = cloud.run(cloud.service.get_run(cloud.owner, run.id))
    check = next(row for row in details.nodes if row.node_key == "check")
    assert (check.status, check.task_token is not None) == ("waiting_approval", True)

    approved = cloud.run(cloud.service.approve(cloud.owner, run.id, comment="ok", wait_s=WAIT_S))
    decision = {"approved": True, "decided_by": cloud.owner.subject, "comment": "ok"}
    assert (approved.status, approved.output) == ("succeeded", decision)
    assert cloud.execution(run)["status"] == "SUCCEEDED"
    assert cloud.nodes(run) == {
        "prepare": "succeeded",
        "check": "succeeded",
        "release": "succeeded",
    }
    assert "workflow_run.approve" in cloud.audit.actions()


def test_reject_fails_the_run_at_the_approval_and_compensates(cloud: Cloud) -> None:
    cloud.create(approving())
    run = cloud.start("approving")
    rejected = cloud.run(cloud.service.reject(cloud.owner, run.id, comment="no", wait_s=WAIT_S))
    assert (rejected.status, rejected.failed_node, rejected.error_code) == (
        "compensated",
        "check",
        APPROVAL_REJECTED,
    )
    # moto drops SendTaskFailure's cause (test_launcher checks the cause sent): the task finds
    # the rejected approval from the recorded nodes.
    assert cloud.tools.calls == ["prepare", "undo:prepare"]
    assert cloud.execution(run)["error"] == "WorkflowCompensated"
    assert cloud.nodes(run) == {"prepare": "compensated", "check": "failed"}


def test_a_decision_no_execution_waits_for_is_a_conflict_and_undone(cloud: Cloud) -> None:
    cloud.create(approving())
    run = cloud.start("approving")
    # A token no task waits for any more (it timed out, its execution ended).
    cloud.run(
        cloud.world.repository.save_node(
            cloud.world.tenant_id,
            run.id,
            "check",
            node_id="check",
            node_type="approval",
            task_token=str(uuid.uuid4()),
        )
    )
    with pytest.raises(Conflict) as late:
        cloud.run(cloud.service.approve(cloud.owner, run.id))
    assert late.value.code == "task_not_waiting"
    details = cloud.run(cloud.service.get_run(cloud.owner, run.id))
    check = next(row for row in details.nodes if row.node_key == "check")
    assert (details.run.status, check.status, check.decision) == (
        "waiting_approval",
        "waiting_approval",
        None,
    )
    assert "workflow_run.approve" not in cloud.audit.actions()


def test_step_functions_times_approvals_out_not_the_service(cloud: Cloud) -> None:
    cloud.create(approving())
    run = cloud.start("approving")
    cloud.skew[0] = timedelta(hours=2)  # past the approval's hour
    details = cloud.run(cloud.service.get_run(cloud.owner, run.id))
    assert details.run.status == "waiting_approval"  # the machine's TimeoutSeconds decides
    with pytest.raises(Conflict) as late:
        cloud.run(cloud.service.approve(cloud.owner, run.id))
    assert late.value.code == APPROVAL_EXPIRED
    assert cloud.nodes(run)["check"] == "waiting_approval"
    cloud.run(cloud.service.cancel(cloud.owner, run.id))


def test_parallel_approvals_keep_the_run_waiting_until_the_last(cloud: Cloud) -> None:
    gates = {
        "id": "gates",
        "type": "parallel",
        "branches": [
            [{"id": "legal", "type": "approval"}],
            [{"id": "finance", "type": "approval"}],
        ],
    }
    cloud.create(workflow(gates, name="gated"))
    run = cloud.start("gated")
    deadline = time.monotonic() + 30
    while len([s for s in cloud.nodes(run).values() if s == "waiting_approval"]) < 2:
        assert time.monotonic() < deadline, cloud.nodes(run)
        time.sleep(0.05)
    first = cloud.run(cloud.service.approve(cloud.owner, run.id, node="legal", wait_s=WAIT_S))
    assert first.status == "waiting_approval"
    last = cloud.run(cloud.service.approve(cloud.owner, run.id, node="finance", wait_s=WAIT_S))
    assert last.status == "succeeded"
    assert cloud.execution(run)["status"] == "SUCCEEDED"


def test_cancel_stops_the_execution(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """(moto's interpreter does not end an execution stopped while its task waits for a token:
    the stop call itself is checked.)"""
    cloud.create(approving())
    run = cloud.start("approving")
    stopped: list[str] = []
    stop_execution = cloud.sfn.stop_execution

    def stop(**arguments: Any) -> Any:
        stopped.append(arguments["executionArn"])
        return stop_execution(**arguments)

    monkeypatch.setattr(cloud.sfn, "stop_execution", stop)
    cancelled = cloud.run(cloud.service.cancel(cloud.owner, run.id))
    assert (cancelled.status, cancelled.error_code) == ("cancelled", "cancelled")
    assert stopped == [cloud.execution_arn(run)]
    assert cloud.nodes(run) == {"prepare": "succeeded", "check": "cancelled"}
    assert cloud.tools.calls == ["prepare"]  # a cancelled run keeps its effects
    with pytest.raises(Conflict) as again:
        cloud.run(cloud.service.cancel(cloud.owner, run.id))
    assert again.value.code == "run_not_active"


def test_resume_starts_the_next_execution_of_the_run(cloud: Cloud) -> None:
    cloud.create(chain("a", "b", "c", undo=False))
    cloud.tools.fail_at = {"b"}
    run = cloud.start("chain")
    assert (run.status, run.failed_node) == ("failed", "b")
    cloud.tools.fail_at = set()
    cloud.tools.calls.clear()
    resumed = cloud.run(cloud.service.resume(cloud.owner, run.id, wait_s=WAIT_S))
    assert (resumed.status, resumed.resumes, resumed.error_code) == ("succeeded", 1, None)
    assert cloud.tools.calls == ["b", "c"]  # a succeeded node does not run again
    assert cloud.execution(run)["status"] == "FAILED"
    assert cloud.execution(run, f"{run.id}-1")["status"] == "SUCCEEDED"


def test_a_run_step_functions_did_not_start_fails_and_resumes(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud.create(chain("a"))
    start_execution = cloud.sfn.start_execution

    def throttled(**_arguments: Any) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, "StartExecution")

    monkeypatch.setattr(cloud.sfn, "start_execution", throttled)
    with pytest.raises(DependencyUnavailable) as refused:
        cloud.start("chain")
    assert refused.value.code == NOT_STARTED
    assert refused.value.details["reason"] == "ThrottlingException"
    [run] = cloud.run(cloud.service.list_runs(cloud.owner))
    assert (str(run.id), run.status, run.error_code) == (
        refused.value.details["run_id"],
        "failed",
        NOT_STARTED,
    )
    assert cloud.tools.calls == []

    monkeypatch.setattr(cloud.sfn, "start_execution", start_execution)
    resumed = cloud.run(cloud.service.resume(cloud.owner, run.id, wait_s=WAIT_S))
    assert resumed.status == "succeeded"
    assert cloud.execution(run, f"{run.id}-1")["status"] == "SUCCEEDED"


def test_deleting_a_workflow_deletes_its_state_machines(cloud: Cloud) -> None:
    cloud.create(chain("a"))
    first = cloud.start("chain")
    cloud.run(cloud.service.update(cloud.owner, "chain", {**chain("a"), "description": "v2"}))
    second = cloud.start("chain")
    assert (first.workflow_version, second.workflow_version) == (1, 2)
    machines = {cloud.machines.arn_of(cloud.world.tenant_id, "chain", v) for v in (1, 2)}
    listed = {m["stateMachineArn"] for m in cloud.sfn.list_state_machines()["stateMachines"]}
    assert machines <= listed

    cloud.run(cloud.service.delete(cloud.owner, "chain"))
    listed = {m["stateMachineArn"] for m in cloud.sfn.list_state_machines()["stateMachines"]}
    assert not machines & listed


def test_runs_on_step_functions_are_never_taken_for_interrupted(cloud: Cloud) -> None:
    run, _ = cloud.world.new_run(workflow(record("a"), name="elsewhere"), {})
    assert cloud.run(cloud.service.recover_interrupted_runs()) == 0
    assert cloud.run(cloud.service.get_run(cloud.owner, run.id)).run.status == "running"
