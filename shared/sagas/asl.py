"""Compiles a saga definition into Amazon States Language (a Step Functions state machine).

The execution input is ``{"state": {...}}`` (with ``run_id`` in the state). Each step is a Task
state that invokes one Lambda function (``arn:aws:states:::lambda:invoke``) with
``{"saga", "step", "state", "retry_count"}``; the function runs the step (``shared.sagas.task``,
which records it in the run store) and returns the whole new state, which replaces ``$.state``.
Anything else at the top level of the input is dropped by the first step.

The run's end is a task too, invoking the same function, so that the run is recorded and the
saga's end hook runs as the in-process runner does it: after the last step ``RecordSuccess``
(``{"saga", "finish": "succeeded", "state"}``) before the Succeed state; after a failure and its
compensations ``RecordCompensated`` or, when a compensation failed (the Choice ``Outcome`` looks
for ``$.compensation_error``), ``RecordFailed`` (``{"saga", "finish": "compensated" | "failed",
"state", "error"}``, the error the failed step's Catch recorded) before the Fail state. A failed
``RecordSuccess`` fails the execution (the documents are published: compensating them would be
wrong); a failed ``RecordCompensated``/``RecordFailed`` goes on to the Fail state.

Failure handling mirrors the in-process runner (``shared.sagas.runner``):

- Retries: the step's ``RetryPolicy`` becomes a retrier on the step's error names (``attempts - 1``
  retries, ``backoff_s`` rounded up to whole seconds, doubling). Errors a caller caused (Quarry's
  4xx errors, passed as ``non_retryable_errors``) are never retried, and Lambda's own transient
  errors (throttling, service errors) are always retried a few times.
- Compensation: one chain holding the compensations in reverse step order. Every step catches
  ``States.ALL`` into ``$.error`` and enters that chain at the compensation of the last step up to
  and including itself that has one (the failed step is compensated too: it may have left part of
  its work behind). A failed compensation is caught as well and the chain goes on, as the local
  runner does. The chain ends in the failure's record, then the Fail state.

One chain entered at the right point, rather than one chain per failure point: the same
compensations in the same order, with a state count linear in the number of steps.

Step Functions matches a retrier by the exact error name Lambda reports (the exception's class
name), not by subclass, so a ``retry_on`` tuple lists the classes themselves. Pure: no AWS
imports; the same compiler serves any saga. The pieces that are not about a ``SagaDefinition``
(the Lambda task, the retriers, the reverse compensation chain and where a failure enters it)
are public: the workflow compiler (``shared.workflows.asl``) builds on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from shared.errors import QuarryError
from shared.sagas.definition import RetryPolicy, SagaDefinition, SagaStep

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_INVOKE_CALLBACK = "arn:aws:states:::lambda:invoke.waitForTaskToken"
SUCCEED_STATE = "Succeeded"
FAIL_STATE = "Failed"
RECORD_SUCCESS_STATE = "RecordSuccess"
OUTCOME_STATE = "Outcome"
RECORD_COMPENSATED_STATE = "RecordCompensated"
RECORD_FAILED_STATE = "RecordFailed"
COMPENSATE_PREFIX = "compensate_"
FAILURE_ERROR = "SagaFailed"
# Errors the Lambda service itself raises when an invocation could not run; worth retrying.
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
LAMBDA_RETRY_ATTEMPTS = 3
LAMBDA_RETRY_INTERVAL_S = 2
BACKOFF_RATE = 2.0
# The run's end is bookkeeping (the run store, the end hook): a few retries, as the database
# may blink.
FINISH_RETRY = RetryPolicy(attempts=3, backoff_s=1.0)

Asl = dict[str, Any]


def client_error_names() -> tuple[str, ...]:
    """Names of Quarry's errors that a caller caused (HTTP status below 500): not worth a retry.

    Only the classes of ``shared.errors``: walking every loaded subclass would make the compiled
    machine depend on which modules happen to be imported (and saga steps raise these)."""
    names: list[str] = []
    pending: list[type[QuarryError]] = list(QuarryError.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__ == QuarryError.__module__ and cls.status_code < 500:
            names.append(cls.__name__)
    return tuple(sorted(set(names)))


def compile_saga(
    definition: SagaDefinition,
    function_arn: str,
    *,
    non_retryable_errors: Sequence[str] = (),
    comment: str | None = None,
) -> Asl:
    """The state machine definition of ``definition``, each step invoking ``function_arn``.

    ``function_arn`` may be a literal ARN or a placeholder such as ``${IngestionFunctionArn}``
    that Step Functions' definition substitutions replace at deploy time.
    """
    if not definition.steps:
        raise ValueError(f"saga {definition.name!r} has no steps")
    _check_state_names(definition)
    compensable = [i for i, step in enumerate(definition.steps) if step.compensation is not None]
    states: dict[str, Any] = {}
    for index, step in enumerate(definition.steps):
        is_last = index == len(definition.steps) - 1
        entry = chain_entry(compensable, index)
        states[step.name] = _step_state(
            definition.name,
            step,
            function_arn,
            next_state=RECORD_SUCCESS_STATE if is_last else definition.steps[index + 1].name,
            on_failure=(
                OUTCOME_STATE if entry is None else _compensation_name(definition.steps[entry])
            ),
            non_retryable_errors=non_retryable_errors,
        )
    by_name = {_compensation_name(definition.steps[i]): definition.steps[i] for i in compensable}
    for name, after in compensation_chain(list(by_name), OUTCOME_STATE):
        states[name] = _compensation_state(
            definition.name, by_name[name], function_arn, after, non_retryable_errors
        )
    states.update(_end_states(definition.name, function_arn, non_retryable_errors))
    return {
        "Comment": comment or f"The {definition.name} saga (compiled by shared.sagas.asl)",
        "StartAt": definition.steps[0].name,
        "States": states,
    }


def _end_states(saga: str, function_arn: str, non_retryable_errors: Sequence[str]) -> Asl:
    """The run's records (success; failure after the compensation chain) and final states."""
    record_success = _finish_state(saga, "succeeded", function_arn, non_retryable_errors)
    record_success["Next"] = SUCCEED_STATE
    states: Asl = {RECORD_SUCCESS_STATE: record_success, SUCCEED_STATE: {"Type": "Succeed"}}
    states[OUTCOME_STATE] = {
        "Type": "Choice",
        "Choices": [
            {
                "Variable": "$.compensation_error",
                "IsPresent": True,
                "Next": RECORD_FAILED_STATE,
            }
        ],
        "Default": RECORD_COMPENSATED_STATE,
    }
    for name, status in (
        (RECORD_COMPENSATED_STATE, "compensated"),
        (RECORD_FAILED_STATE, "failed"),
    ):
        record = _finish_state(saga, status, function_arn, non_retryable_errors)
        record["Parameters"]["Payload"]["error.$"] = "$.error"
        record["Catch"] = [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": FAIL_STATE}
        ]
        record["Next"] = FAIL_STATE
        states[name] = record
    states[FAIL_STATE] = {
        "Type": "Fail",
        "Error": FAILURE_ERROR,
        "Cause": f"a step of the {saga} saga failed; see the run and the execution history",
    }
    return states


def _finish_state(
    saga: str, status: str, function_arn: str, non_retryable_errors: Sequence[str]
) -> Asl:
    state = lambda_task(function_arn, {"saga": saga, "finish": status, "state.$": "$.state"})
    state["ResultPath"] = None  # the state (and the execution's output) stays as it was
    state["Retry"] = retriers(FINISH_RETRY, non_retryable_errors)
    return state


def _check_state_names(definition: SagaDefinition) -> None:
    reserved = {
        SUCCEED_STATE,
        FAIL_STATE,
        RECORD_SUCCESS_STATE,
        OUTCOME_STATE,
        RECORD_COMPENSATED_STATE,
        RECORD_FAILED_STATE,
    }
    for step in definition.steps:
        if step.name in reserved or step.name.startswith(COMPENSATE_PREFIX):
            raise ValueError(f"step name {step.name!r} clashes with a generated state name")
        if not 0 < len(step.name) <= 80 - len(COMPENSATE_PREFIX):
            raise ValueError(f"step name {step.name!r} is empty or too long for a state name")


def _compensation_name(step: SagaStep) -> str:
    return f"{COMPENSATE_PREFIX}{step.name}"


def chain_entry(compensable: Sequence[int], failed: int) -> int | None:
    """Where a failure at position ``failed`` enters the compensation chain: the last
    compensable position at or before it (the failed one may have left part of its work
    behind), or None when nothing before it is compensable."""
    candidates = [position for position in compensable if position <= failed]
    return candidates[-1] if candidates else None


def compensation_chain(names: Sequence[str], end: str) -> list[tuple[str, str]]:
    """The compensation states ``names`` (given in forward order) as one chain run backwards:
    each name with the state that follows it, the last one followed by ``end``."""
    backwards = list(reversed(names))
    return [
        (name, backwards[i + 1] if i + 1 < len(backwards) else end)
        for i, name in enumerate(backwards)
    ]


def lambda_task(function_arn: str, payload: Asl, *, wait_for_token: bool = False) -> Asl:
    """A Task state invoking ``function_arn`` with ``payload`` (``.waitForTaskToken``: the
    task ends when someone sends the token's outcome, not when the function returns)."""
    return {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE_CALLBACK if wait_for_token else LAMBDA_INVOKE,
        "Parameters": {"FunctionName": function_arn, "Payload": payload},
    }


def _invoke(saga: str, step: str, function_arn: str, *, compensate: bool) -> Asl:
    payload: dict[str, Any] = {"saga": saga, "step": step, "state.$": "$.state"}
    if compensate:
        payload["compensate"] = True
    else:  # the task records the attempt (``RetryCount``: 0 on the first)
        payload["retry_count.$"] = "$$.State.RetryCount"
    return lambda_task(function_arn, payload)


def _step_state(
    saga: str,
    step: SagaStep,
    function_arn: str,
    *,
    next_state: str,
    on_failure: str,
    non_retryable_errors: Sequence[str],
) -> Asl:
    state = _invoke(saga, step.name, function_arn, compensate=False)
    # The function returns the whole new state: it replaces $.state (and the rest of the input).
    state["ResultSelector"] = {"state.$": "$.Payload"}
    state["ResultPath"] = "$"
    state["Retry"] = retriers(step.retry, non_retryable_errors)
    state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": on_failure}]
    state["Next"] = next_state
    return state


def _compensation_state(
    saga: str, step: SagaStep, function_arn: str, next_state: str, non_retryable: Sequence[str]
) -> Asl:
    state = _invoke(saga, step.name, function_arn, compensate=True)
    # A compensation changes nothing in the state: keep the input (with $.error) as it is.
    state["ResultPath"] = None
    state["Retry"] = retriers(step.retry, non_retryable)
    state["Catch"] = [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.compensation_error", "Next": next_state}
    ]
    state["Next"] = next_state
    return state


def retriers(policy: RetryPolicy, non_retryable_errors: Sequence[str] = ()) -> list[Asl]:
    """Step Functions retriers for one step: the first retrier that matches an error applies."""
    result = [transient_lambda_retrier()]
    if policy.attempts <= 1:
        return result
    if non_retryable_errors:
        result.append(no_retry(non_retryable_errors))
    result.append(
        backoff_retrier(
            error_names(policy.retry_on), attempts=policy.attempts, backoff_s=policy.backoff_s
        )
    )
    return result


def transient_lambda_retrier() -> Asl:
    """Retries what the Lambda service itself failed at (throttling, service errors)."""
    return {
        "ErrorEquals": list(LAMBDA_TRANSIENT_ERRORS),
        "IntervalSeconds": LAMBDA_RETRY_INTERVAL_S,
        "MaxAttempts": LAMBDA_RETRY_ATTEMPTS,
        "BackoffRate": BACKOFF_RATE,
    }


def no_retry(names: Iterable[str]) -> Asl:
    """A retrier that matches ``names`` first so that no later retrier retries them."""
    return {"ErrorEquals": sorted(set(names)), "MaxAttempts": 0}


def backoff_retrier(
    names: Sequence[str], *, attempts: int, backoff_s: float, max_backoff_s: float | None = None
) -> Asl:
    """``attempts`` in all on the errors ``names``, waiting ``backoff_s * 2**n`` (whole seconds,
    at least one: what ASL allows; at most ``max_backoff_s`` when given)."""
    retrier: Asl = {
        "ErrorEquals": list(names),
        "IntervalSeconds": max(1, math.ceil(backoff_s)),
        "MaxAttempts": attempts - 1,
        "BackoffRate": BACKOFF_RATE,
    }
    if max_backoff_s is not None:
        retrier["MaxDelaySeconds"] = max(1, math.ceil(max_backoff_s))
    return retrier


def error_names(exception_types: Iterable[type[BaseException]]) -> list[str]:
    """ASL error names for Python exception classes; ``Exception`` means any error of the task."""
    names: list[str] = []
    for cls in exception_types:
        if cls in (Exception, BaseException):
            return ["States.TaskFailed"]
        names.append(cls.__name__)
    return sorted(set(names)) or ["States.TaskFailed"]
