"""The saga → Amazon States Language compiler: structure, and executions on moto's interpreter.

What moto does with the compiled machine (moto 5, ``stepfunctions.execute_state_machine``): it
runs the ASL in its own interpreter (ported from LocalStack) and really invokes the Lambda task
through its mocked Lambda API. Without a function it fails with
``Lambda.ResourceNotFoundException``, which the step's Catch routes into compensation. These tests
route the invocations to a fake saga function (``tests.fixtures.moto_lambda``: no Docker, no
network) to drive the success path, retries and the compensation chain.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any, cast

import boto3
import pytest

from shared.errors import DependencyUnavailable
from shared.ingestion.saga import IngestionDeps, IngestionSteps
from shared.sagas.asl import (
    FAIL_STATE,
    FINISH_RETRY,
    LAMBDA_INVOKE,
    OUTCOME_STATE,
    RECORD_COMPENSATED_STATE,
    RECORD_FAILED_STATE,
    RECORD_SUCCESS_STATE,
    SUCCEED_STATE,
    client_error_names,
    compile_saga,
    error_names,
    retriers,
)
from shared.sagas.definition import RetryPolicy, SagaDefinition, SagaState, SagaStep
from tests.fixtures.aws import REGION
from tests.fixtures.moto_lambda import (
    FunctionError,
    create_placeholder_function,
    create_role,
    executing_mock_aws,
    route_invokes,
)

pytestmark = pytest.mark.unit

FUNCTION = "quarry-saga-test"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}"


async def _noop(state: SagaState) -> None:
    return None


def four_step_saga() -> SagaDefinition:
    return SagaDefinition(
        "test",
        (
            SagaStep("a", _noop),
            SagaStep("b", _noop, compensation=_noop),
            SagaStep("c", _noop, compensation=_noop, retry=RetryPolicy(attempts=3, backoff_s=0.5)),
            SagaStep("d", _noop),
        ),
    )


def ingestion_saga() -> SagaDefinition:
    # definition() only refers to the bound step methods; nothing runs, so no dependencies.
    return IngestionSteps(cast(IngestionDeps, None)).definition()


def _targets(state: dict[str, Any]) -> list[str]:
    targets = [state["Next"]] if "Next" in state else []
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [state["Default"]] if "Default" in state else []
    return targets + [c["Next"] for c in state.get("Catch", [])]


def _assert_well_formed(asl: dict[str, Any]) -> None:
    states = asl["States"]
    seen, pending = set(), [asl["StartAt"]]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        assert name in states, f"{name} is referenced but not defined"
        seen.add(name)
        pending.extend(_targets(states[name]))
    assert seen == set(states), "every state is reachable"
    json.dumps(asl)  # plain JSON


# --- structure ----------------------------------------------------------------------------------
def test_four_step_saga_structure() -> None:
    asl = compile_saga(four_step_saga(), FUNCTION_ARN, non_retryable_errors=["InvalidInput"])
    _assert_well_formed(asl)
    states = asl["States"]
    assert asl["StartAt"] == "a"
    assert set(states) == {
        "a",
        "b",
        "c",
        "d",
        "compensate_c",
        "compensate_b",
        "RecordSuccess",
        "Succeeded",
        "Outcome",
        "RecordCompensated",
        "RecordFailed",
        "Failed",
    }
    # The last step goes on to the run's record, then the Succeed state.
    assert [states[s]["Next"] for s in "abcd"] == ["b", "c", "d", RECORD_SUCCESS_STATE]
    assert states[RECORD_SUCCESS_STATE]["Next"] == SUCCEED_STATE
    # Each failure point enters the reverse chain at its last compensable step (itself included);
    # with nothing to compensate it goes straight to the outcome.
    catches = {s: states[s]["Catch"][0] for s in "abcd"}
    assert {s: c["Next"] for s, c in catches.items()} == {
        "a": OUTCOME_STATE,
        "b": "compensate_b",
        "c": "compensate_c",
        "d": "compensate_c",
    }
    assert all(
        c == {**c, "ErrorEquals": ["States.ALL"], "ResultPath": "$.error"} for c in catches.values()
    )
    assert states["compensate_c"]["Next"] == "compensate_b"
    assert states["compensate_b"]["Next"] == OUTCOME_STATE
    # A failed compensation does not stop the chain; it is noted in $.compensation_error.
    assert states["compensate_c"]["Catch"][0] == {
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.compensation_error",
        "Next": "compensate_b",
    }
    # The outcome: compensated, or failed when a compensation failed; recorded, then Fail.
    assert states[OUTCOME_STATE] == {
        "Type": "Choice",
        "Choices": [
            {"Variable": "$.compensation_error", "IsPresent": True, "Next": RECORD_FAILED_STATE}
        ],
        "Default": RECORD_COMPENSATED_STATE,
    }
    for record in (RECORD_COMPENSATED_STATE, RECORD_FAILED_STATE):
        assert states[record]["Next"] == FAIL_STATE
        # A record that cannot be written still ends in the Fail state.
        assert states[record]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": FAIL_STATE}
        ]
    assert "Catch" not in states[RECORD_SUCCESS_STATE]  # published: nothing to compensate
    assert states[SUCCEED_STATE] == {"Type": "Succeed"}
    assert states[FAIL_STATE]["Type"] == "Fail"
    assert states[FAIL_STATE]["Error"] == "SagaFailed"


def test_task_invokes_the_function_and_replaces_the_state() -> None:
    states = compile_saga(four_step_saga(), FUNCTION_ARN)["States"]
    step = states["b"]
    assert step["Type"] == "Task"
    assert step["Resource"] == LAMBDA_INVOKE
    assert step["Parameters"] == {
        "FunctionName": FUNCTION_ARN,
        "Payload": {
            "saga": "test",
            "step": "b",
            "state.$": "$.state",
            "retry_count.$": "$$.State.RetryCount",  # the task records the attempt
        },
    }
    assert step["ResultSelector"] == {"state.$": "$.Payload"}
    assert step["ResultPath"] == "$"
    compensation = states["compensate_b"]
    assert compensation["Parameters"]["Payload"] == {
        "saga": "test",
        "step": "b",
        "state.$": "$.state",
        "compensate": True,
    }
    assert compensation["ResultPath"] is None  # keeps $.state and $.error as they were


def test_the_runs_end_invokes_the_function_with_the_outcome() -> None:
    states = compile_saga(four_step_saga(), FUNCTION_ARN, non_retryable_errors=["NotFound"])[
        "States"
    ]
    payloads = {
        name: states[name]["Parameters"]["Payload"]
        for name in (RECORD_SUCCESS_STATE, RECORD_COMPENSATED_STATE, RECORD_FAILED_STATE)
    }
    assert payloads == {
        RECORD_SUCCESS_STATE: {"saga": "test", "finish": "succeeded", "state.$": "$.state"},
        RECORD_COMPENSATED_STATE: {
            "saga": "test",
            "finish": "compensated",
            "state.$": "$.state",
            "error.$": "$.error",  # what the failed step's Catch recorded
        },
        RECORD_FAILED_STATE: {
            "saga": "test",
            "finish": "failed",
            "state.$": "$.state",
            "error.$": "$.error",
        },
    }
    for name in payloads:
        assert states[name]["Resource"] == LAMBDA_INVOKE
        assert states[name]["Parameters"]["FunctionName"] == FUNCTION_ARN
        assert states[name]["ResultPath"] is None  # the execution's output stays the state
        assert states[name]["Retry"] == retriers(FINISH_RETRY, ["NotFound"])


def test_retry_policy_becomes_retriers() -> None:
    states = compile_saga(four_step_saga(), FUNCTION_ARN, non_retryable_errors=["NotFound"])[
        "States"
    ]
    lambda_errors, no_retry, step_errors = states["c"]["Retry"]
    assert "Lambda.TooManyRequestsException" in lambda_errors["ErrorEquals"]
    assert no_retry == {"ErrorEquals": ["NotFound"], "MaxAttempts": 0}
    assert step_errors == {
        "ErrorEquals": ["States.TaskFailed"],
        "IntervalSeconds": 1,  # 0.5 s rounded up: ASL intervals are whole seconds
        "MaxAttempts": 2,  # three attempts in all
        "BackoffRate": 2.0,
    }
    # A single-attempt step retries only Lambda's own transient errors.
    assert [r["ErrorEquals"][0] for r in states["a"]["Retry"]] == [lambda_errors["ErrorEquals"][0]]


def test_error_names() -> None:
    assert error_names([Exception]) == ["States.TaskFailed"]
    assert error_names([DependencyUnavailable, TimeoutError]) == [
        "DependencyUnavailable",
        "TimeoutError",
    ]
    names = client_error_names()
    assert {"InvalidInput", "NotFound", "RateLimited"} <= set(names)
    assert "DependencyUnavailable" not in names


def test_ingestion_saga_structure() -> None:
    asl = compile_saga(ingestion_saga(), FUNCTION_ARN, non_retryable_errors=client_error_names())
    _assert_well_formed(asl)
    states = asl["States"]
    order = ["extract", "register", "chunk", "embed", "index", "publish"]
    assert asl["StartAt"] == "extract"
    assert [states[s]["Next"] for s in order] == [*order[1:], RECORD_SUCCESS_STATE]
    assert {s: states[s]["Catch"][0]["Next"] for s in order} == {
        "extract": OUTCOME_STATE,
        "register": OUTCOME_STATE,
        "chunk": OUTCOME_STATE,
        "embed": OUTCOME_STATE,
        "index": "compensate_index",
        "publish": "compensate_index",
    }
    assert states["compensate_index"]["Next"] == OUTCOME_STATE
    for step in ingestion_saga().steps:  # each step's own RetryPolicy
        retriers = states[step.name]["Retry"]
        if step.retry.attempts <= 1:
            assert len(retriers) == 1  # Lambda's transient errors only
            continue
        assert retriers[-1]["ErrorEquals"] == ["States.TaskFailed"]
        assert retriers[-1]["MaxAttempts"] == step.retry.attempts - 1
        assert retriers[-1]["IntervalSeconds"] == max(1, math.ceil(step.retry.backoff_s))
    assert {s.name for s in ingestion_saga().steps if s.retry.attempts > 1} == {
        "embed",
        "index",
        "publish",
    }


@pytest.mark.parametrize(
    "name", ["Succeeded", "Failed", "RecordSuccess", "Outcome", "compensate_x", "", "x" * 80]
)
def test_rejects_step_names_that_clash(name: str) -> None:
    with pytest.raises(ValueError, match="step name"):
        compile_saga(SagaDefinition("s", (SagaStep(name, _noop),)), FUNCTION_ARN)


def test_rejects_an_empty_saga() -> None:
    with pytest.raises(ValueError, match="no steps"):
        compile_saga(SagaDefinition("s", ()), FUNCTION_ARN)


# --- executions on moto -------------------------------------------------------------------------
class FakeSagaFunction:
    """Stands in for the saga's Lambda: records each task (``<step>``, ``undo <step>``,
    ``finish <status>``), fails the steps and compensations it is told to."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.failures: dict[str, str] = {}  # step -> error type
        self.failing_compensations: set[str] = set()
        self.finish_errors: list[dict[str, Any]] = []  # the "error" each failure's record got

    def run(self, task: dict[str, Any]) -> SagaState | FunctionError:
        state = dict(task["state"])
        if "finish" in task:
            self.calls.append(f"finish {task['finish']}")
            if "error" in task:
                self.finish_errors.append(task["error"])
            return state
        step, compensate = task["step"], bool(task.get("compensate"))
        self.calls.append(f"undo {step}" if compensate else step)
        failing = step in self.failing_compensations if compensate else step in self.failures
        if failing:
            error_type = "RuntimeError" if compensate else self.failures[step]
            return FunctionError(error_type, f"{step} failed")
        if not compensate:
            state[f"{step}_done"] = True
        return state


@pytest.fixture
def fake_function(monkeypatch: pytest.MonkeyPatch) -> FakeSagaFunction:
    fake = FakeSagaFunction()
    route_invokes(monkeypatch, fake.run)
    return fake


@pytest.fixture
def aws() -> Iterator[None]:
    """Step Functions executes; Lambda is moto's simple backend (no Docker)."""
    with executing_mock_aws():
        yield


def _run(asl: dict[str, Any], state: SagaState, *, with_function: bool = True) -> dict[str, Any]:
    role = create_role("saga")
    if with_function:
        create_placeholder_function(FUNCTION, role)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(name="saga", definition=json.dumps(asl), roleArn=role)
    execution = sfn.start_execution(
        stateMachineArn=machine["stateMachineArn"], input=json.dumps({"state": state})
    )["executionArn"]
    deadline = time.monotonic() + 30
    while True:
        described = cast(dict[str, Any], sfn.describe_execution(executionArn=execution))
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    history = sfn.get_execution_history(executionArn=execution)["events"]
    described["entered"] = [
        e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e
    ]
    return described


def test_moto_without_the_function_fails_into_the_fail_state() -> None:
    asl = compile_saga(four_step_saga(), FUNCTION_ARN)
    with executing_mock_aws(use_docker=True):  # never reached: there is no function to start
        result = _run(asl, {"run_id": "r1"}, with_function=False)
    assert result["status"] == "FAILED"
    assert result["error"] == "SagaFailed"
    # The run's record cannot be written either: the machine still ends in the Fail state.
    assert result["entered"] == ["a", OUTCOME_STATE, RECORD_COMPENSATED_STATE, FAIL_STATE]


@pytest.mark.usefixtures("aws")
def test_moto_runs_every_step_and_returns_the_final_state(fake_function: FakeSagaFunction) -> None:
    asl = compile_saga(ingestion_saga(), FUNCTION_ARN, non_retryable_errors=client_error_names())
    result = _run(asl, {"run_id": "r1"})
    assert result["status"] == "SUCCEEDED", result
    steps = ["extract", "register", "chunk", "embed", "index", "publish"]
    assert fake_function.calls == [*steps, "finish succeeded"]
    assert result["entered"][-2:] == [RECORD_SUCCESS_STATE, SUCCEED_STATE]
    output = json.loads(result["output"])
    assert output == {"state": {"run_id": "r1", **{f"{s}_done": True for s in steps}}}


@pytest.mark.usefixtures("aws")
def test_moto_compensates_in_reverse_from_the_failed_step(
    fake_function: FakeSagaFunction,
) -> None:
    fake_function.failures["d"] = "InvalidInput"  # a caller's error: not retried
    asl = compile_saga(four_step_saga(), FUNCTION_ARN, non_retryable_errors=client_error_names())
    result = _run(asl, {"run_id": "r1"})
    assert result["status"] == "FAILED"
    assert result["error"] == "SagaFailed"
    assert fake_function.calls == ["a", "b", "c", "d", "undo c", "undo b", "finish compensated"]
    assert result["entered"][-5:] == [
        "compensate_c",
        "compensate_b",
        OUTCOME_STATE,
        RECORD_COMPENSATED_STATE,
        FAIL_STATE,
    ]
    # The record gets the error as the failed step's Catch recorded it.
    (error,) = fake_function.finish_errors
    assert error["Error"] == "InvalidInput"
    assert json.loads(error["Cause"])["errorMessage"] == "d failed"


@pytest.mark.usefixtures("aws")
def test_moto_a_failed_step_is_compensated_itself(fake_function: FakeSagaFunction) -> None:
    fake_function.failures["b"] = "NotFound"
    asl = compile_saga(four_step_saga(), FUNCTION_ARN, non_retryable_errors=client_error_names())
    result = _run(asl, {"run_id": "r1"})
    assert result["status"] == "FAILED"
    assert fake_function.calls == ["a", "b", "undo b", "finish compensated"]


@pytest.mark.usefixtures("aws")
def test_moto_a_failed_compensation_goes_on_and_ends_failed(
    fake_function: FakeSagaFunction,
) -> None:
    saga = SagaDefinition(
        "test",
        (
            SagaStep("a", _noop, compensation=_noop),
            SagaStep("b", _noop, compensation=_noop),
            SagaStep("c", _noop),
        ),
    )
    fake_function.failures["c"] = "InvalidInput"
    fake_function.failing_compensations.add("b")
    asl = compile_saga(saga, FUNCTION_ARN, non_retryable_errors=client_error_names())
    result = _run(asl, {"run_id": "r1"})
    assert result["status"] == "FAILED"
    assert fake_function.calls == ["a", "b", "c", "undo b", "undo a", "finish failed"]
    assert result["entered"][-3:] == [OUTCOME_STATE, RECORD_FAILED_STATE, FAIL_STATE]
