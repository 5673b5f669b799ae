"""The Step Functions adapters of workflow runs, on moto: a state machine per workflow version
(created, brought up to date, started, stopped, deleted) and task tokens (an approval's
decision sent to the task that waits for it)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.adapters.stepfunctions_task_tokens import StepFunctionsTaskTokens
from shared.adapters.stepfunctions_workflow_state_machines import (
    StepFunctionsWorkflowStateMachines,
)
from shared.container import Container
from shared.errors import ConfigurationError, Conflict
from shared.sagas.asl import LAMBDA_INVOKE_CALLBACK
from shared.settings import Settings
from shared.workflows.definition import ValidationRules, WorkflowDefinition, parse_definition
from tests.fixtures.aws import REGION
from tests.fixtures.moto_lambda import (
    create_placeholder_function,
    create_role,
    executing_mock_aws,
    route_invokes,
)

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
PREFIX = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:quarry-test-workflow"
TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")


def definition(version: int = 1) -> WorkflowDefinition:
    source = {
        "name": "a-workflow-with-a-rather-long-name-" + "x" * 60,
        "version": version,
        "nodes": [{"id": "only", "type": "transform", "template": "hi"}],
    }
    return parse_definition(source, ValidationRules())


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[dict[str, str]]:
    with mock_aws():
        yield {name: create_role(name) for name in ("workflows", "other")}


def machines(role_arn: str) -> StepFunctionsWorkflowStateMachines:
    return StepFunctionsWorkflowStateMachines(
        arn_prefix=PREFIX,
        role_arn=role_arn,
        function="quarry-workflows",
        default_timeout_s=60,
        default_approval_timeout_s=3600,
        region=REGION,
    )


async def test_deploy_creates_one_machine_per_version(aws: dict[str, str]) -> None:
    adapter = machines(aws["workflows"])
    arn = await adapter.deploy(TENANT, definition())
    assert arn.startswith(f"{PREFIX}-")
    assert arn.endswith("-v1")
    assert len(arn.rsplit(":", 1)[1]) <= 80  # the workflow's name is longer than that
    sfn = boto3.client("stepfunctions")
    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert json.loads(described["definition"]) == adapter.compile(definition())
    assert described["roleArn"] == aws["workflows"]
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn)["tags"]}
    assert tags == {
        "quarry:tenant": str(TENANT),
        "quarry:workflow": definition().name,
        "quarry:version": "1",
    }
    assert await adapter.deploy(TENANT, definition()) == arn  # nothing changed
    second = await adapter.deploy(TENANT, definition(version=2))
    assert second != arn
    other_tenant = await adapter.deploy(uuid.uuid4(), definition())
    assert other_tenant not in (arn, second)
    assert len(sfn.list_state_machines()["stateMachines"]) == 3


async def test_deploy_brings_a_changed_machine_up_to_date(aws: dict[str, str]) -> None:
    arn = await machines(aws["workflows"]).deploy(TENANT, definition())
    assert await machines(aws["other"]).deploy(TENANT, definition()) == arn
    described = boto3.client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    assert described["roleArn"] == aws["other"]


async def test_start_deploys_if_needed_and_starts_a_run_once(aws: dict[str, str]) -> None:
    adapter = machines(aws["workflows"])
    run_id = uuid.uuid4()
    execution = await adapter.start(
        TENANT, definition(), run_id=run_id, run_input={"question": "why?"}
    )
    again = await adapter.start(TENANT, definition(), run_id=run_id, run_input={})
    assert again == execution
    sfn = boto3.client("stepfunctions")
    machine = adapter.arn_of(TENANT, definition().name, 1)
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions] == [str(run_id)]
    described = sfn.describe_execution(executionArn=execution)
    assert json.loads(described["input"]) == {
        "run_id": str(run_id),
        "tenant_id": str(TENANT),
        "input": {"question": "why?"},
    }


async def test_stop_stops_the_runs_executions(aws: dict[str, str]) -> None:
    adapter = machines(aws["workflows"])
    run_id, other = uuid.uuid4(), uuid.uuid4()
    first = await adapter.start(TENANT, definition(), run_id=run_id, run_input={})
    resumed = await adapter.start(
        TENANT, definition(), run_id=run_id, run_input={}, execution_name=f"{run_id}-1"
    )
    untouched = await adapter.start(TENANT, definition(), run_id=other, run_input={})
    await adapter.stop(TENANT, definition(), run_id=run_id)
    sfn = boto3.client("stepfunctions")
    statuses = {
        arn: sfn.describe_execution(executionArn=arn)["status"]
        for arn in (first, resumed, untouched)
    }
    assert statuses == {first: "ABORTED", resumed: "ABORTED", untouched: "RUNNING"}


async def test_delete_removes_the_versions_machines(aws: dict[str, str]) -> None:
    adapter = machines(aws["workflows"])
    for version in (1, 2):
        await adapter.deploy(TENANT, definition(version))
    await adapter.delete(TENANT, definition().name, [1, 2])
    assert boto3.client("stepfunctions").list_state_machines()["stateMachines"] == []


@pytest.mark.parametrize(
    "prefix",
    [
        "quarry-workflow",
        f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:" + "p" * 49,
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:quarry",
    ],
)
def test_a_bad_arn_prefix_is_a_configuration_error(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="ARN prefix"):
        StepFunctionsWorkflowStateMachines(
            arn_prefix=prefix,
            role_arn="arn:aws:iam::123456789012:role/r",
            function="f",
            default_timeout_s=1,
            default_approval_timeout_s=1,
            client=object(),
        )


def test_the_container_builds_the_adapters_from_settings(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with pytest.raises(ConfigurationError, match="WORKFLOW_STATE_MACHINE_PREFIX"):
        _ = Container(make_settings()).workflow_state_machines
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "quarry-dev-workflows")
    container = Container(
        make_settings(aws={"workflow_state_machine_prefix": PREFIX, "workflow_role_arn": "arn:r"})
    )
    asl = container.workflow_state_machines.compile(definition())
    assert asl["States"]["only"]["Parameters"]["FunctionName"] == "quarry-dev-workflows"
    assert isinstance(container.workflow_task_tokens, StepFunctionsTaskTokens)


# --- task tokens ------------------------------------------------------------------------------
WAITING = {
    "StartAt": "wait",
    "States": {
        "wait": {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE_CALLBACK,
            "Parameters": {"FunctionName": "waiter", "Payload": {"token.$": "$$.Task.Token"}},
            "End": True,
        }
    },
}


@pytest.fixture
def waiting(
    monkeypatch: pytest.MonkeyPatch, aws_credentials: None
) -> Iterator[Callable[[], tuple[str, str]]]:
    """Starts executions that wait for their token; each answers (execution ARN, token)."""
    tokens: list[str] = []

    def waiter(task: Any) -> dict[str, Any]:
        tokens.append(task["token"])
        return {}

    route_invokes(monkeypatch, waiter)
    with executing_mock_aws():
        role = create_role("r")
        create_placeholder_function("waiter", role)
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="waits", definition=json.dumps(WAITING), roleArn=role
        )["stateMachineArn"]

        def start() -> tuple[str, str]:
            seen = len(tokens)
            execution = sfn.start_execution(stateMachineArn=machine, name=uuid.uuid4().hex)[
                "executionArn"
            ]
            deadline = time.monotonic() + 30
            while len(tokens) == seen and time.monotonic() < deadline:
                time.sleep(0.02)
            return execution, tokens[-1]

        yield start


def finished(execution: str) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    deadline = time.monotonic() + 30
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.02)


async def test_a_decision_ends_the_waiting_task(
    waiting: Callable[[], tuple[str, str]],
) -> None:
    tokens = StepFunctionsTaskTokens(region=REGION)
    approved, token = waiting()
    await tokens.succeed(token, {"approved": True, "decided_by": "ann"})
    described = finished(approved)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"approved": True, "decided_by": "ann"}

    rejected, token = waiting()
    await tokens.fail(token, error="approval_rejected", cause='{"code": "approval_rejected"}')
    described = finished(rejected)
    assert (described["status"], described["error"]) == ("FAILED", "approval_rejected")


async def test_a_token_nobody_waits_for_is_a_conflict(
    waiting: Callable[[], tuple[str, str]],
) -> None:
    with pytest.raises(Conflict) as caught:
        await StepFunctionsTaskTokens(region=REGION).succeed("no-such-token", {})
    assert caught.value.code == "task_not_waiting"
