"""Compiles a saga definition into Amazon States Language (a Step Functions state machine).

The execution input is ``{"state": {...}}`` (with ``run_id`` in the state). Each step is a Task
state that invokes one Lambda function (``arn:aws:states:::lambda:invoke``) with
``{"saga", "step", "state"}``; the function runs the step and returns the whole new state, which
replaces ``$.state``. Anything else at the top level of the input is dropped by the first step.

Failure handling mirrors the in-process runner (``shared.sagas.runner``):

- Retries: the step's ``RetryPolicy`` becomes a retrier on the step's error names (``attempts - 1``
  retries, ``backoff_s`` rounded up to whole seconds, doubling). Errors a caller caused (Quarry's
  4xx errors, passed as ``non_retryable_errors``) are never retried, and Lambda's own transient
  errors (throttling, service errors) are always retried a few times.
- Compensation: one chain holding the compensations in reverse step order. Every step catches
  ``States.ALL`` into ``$.error`` and enters that chain at the compensation of the last step up to
  and including itself that has one (the failed step is compensated too: it may have left part of
  its work behind). A failed compensation is caught as well and the chain goes on, as the local
  runner does. The chain ends in a Fail state; success ends in a Succeed state.

One chain entered at the right point, rather than one chain per failure point: the same
compensations in the same order, with a state count linear in the number of steps.

Step Functions matches a retrier by the exact error name Lambda reports (the exception's class
name), not by subclass, so a ``retry_on`` tuple lists the classes themselves. Pure: no AWS
imports; the same compiler serves any saga (ingestion, workflows).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from shared.errors import QuarryError
from shared.sagas.definition import RetryPolicy, SagaDefinition, SagaStep

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SUCCEED_STATE = "Succeeded"
FAIL_STATE = "Failed"
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
        states[step.name] = _step_state(
            definition.name,
            step,
            function_arn,
            next_state=SUCCEED_STATE if is_last else definition.steps[index + 1].name,
            on_failure=_compensation_entry(definition, compensable, index),
            non_retryable_errors=non_retryable_errors,
        )
    for position, index in enumerate(reversed(compensable)):
        step = definition.steps[index]
        lower = list(reversed(compensable))[position + 1 :]
        after = _compensation_name(definition.steps[lower[0]]) if lower else FAIL_STATE
        states[_compensation_name(step)] = _compensation_state(
            definition.name, step, function_arn, after, non_retryable_errors
        )
    states[SUCCEED_STATE] = {"Type": "Succeed"}
    states[FAIL_STATE] = {
        "Type": "Fail",
        "Error": FAILURE_ERROR,
        "Cause": f"a step of the {definition.name} saga failed; see the execution history",
    }
    return {
        "Comment": comment or f"The {definition.name} saga (compiled by shared.sagas.asl)",
        "StartAt": definition.steps[0].name,
        "States": states,
    }


def _check_state_names(definition: SagaDefinition) -> None:
    reserved = {SUCCEED_STATE, FAIL_STATE}
    for step in definition.steps:
        if step.name in reserved or step.name.startswith(COMPENSATE_PREFIX):
            raise ValueError(f"step name {step.name!r} clashes with a generated state name")
        if not 0 < len(step.name) <= 80 - len(COMPENSATE_PREFIX):
            raise ValueError(f"step name {step.name!r} is empty or too long for a state name")


def _compensation_name(step: SagaStep) -> str:
    return f"{COMPENSATE_PREFIX}{step.name}"


def _compensation_entry(definition: SagaDefinition, compensable: list[int], failed: int) -> str:
    """Where a failure of step ``failed`` goes: the last compensation at or before it."""
    candidates = [i for i in compensable if i <= failed]
    if not candidates:
        return FAIL_STATE
    return _compensation_name(definition.steps[candidates[-1]])


def _invoke(saga: str, step: str, function_arn: str, *, compensate: bool) -> Asl:
    payload: dict[str, Any] = {"saga": saga, "step": step, "state.$": "$.state"}
    if compensate:
        payload["compensate"] = True
    return {
        "Type": "Task",
        "Resource": LAMBDA_INVOKE,
        "Parameters": {"FunctionName": function_arn, "Payload": payload},
    }


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
    result: list[Asl] = [
        {
            "ErrorEquals": list(LAMBDA_TRANSIENT_ERRORS),
            "IntervalSeconds": LAMBDA_RETRY_INTERVAL_S,
            "MaxAttempts": LAMBDA_RETRY_ATTEMPTS,
            "BackoffRate": BACKOFF_RATE,
        }
    ]
    if policy.attempts <= 1:
        return result
    if non_retryable_errors:
        result.append({"ErrorEquals": sorted(set(non_retryable_errors)), "MaxAttempts": 0})
    result.append(
        {
            "ErrorEquals": error_names(policy.retry_on),
            "IntervalSeconds": max(1, math.ceil(policy.backoff_s)),
            "MaxAttempts": policy.attempts - 1,
            "BackoffRate": BACKOFF_RATE,
        }
    )
    return result


def error_names(exception_types: Iterable[type[BaseException]]) -> list[str]:
    """ASL error names for Python exception classes; ``Exception`` means any error of the task."""
    names: list[str] = []
    for cls in exception_types:
        if cls in (Exception, BaseException):
            return ["States.TaskFailed"]
        names.append(cls.__name__)
    return sorted(set(names)) or ["States.TaskFailed"]
