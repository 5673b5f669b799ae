"""A saga's tasks on Step Functions: the state machine (``shared.sagas.asl``) carries the state
and does the retries and the compensation chain; each task runs one step's attempt, one
compensation or the run's end, and records it in the run store with the in-process runner's own
pieces (``run_attempt``, ``compensate``, ``end_run``), so a run reads and ends the same wherever
it ran. A task event is what the compiled machine sends::

    {"saga", "step", "state", "retry_count"}     # one attempt; answers the new state
    {"saga", "step", "state", "compensate": true}  # the step's compensation; the state
    {"saga", "finish": "succeeded", "state"}     # the run succeeded
    {"saga", "finish": "compensated" | "failed", "state", "error": {"Error", "Cause"}}

``finish`` records the status, with the failure's code and message read back from the error the
failed step's Catch recorded, then runs the saga's end hook (``on_success`` / ``on_failure``).

A failed attempt raises ``SagaStepError`` named after the step's own exception class: Lambda
reports that name as the error type, which the machine's retriers and no-retry list match. Its
message is JSON ``{"step", "code", "description"}``, which ``finish`` reads back from the
``Cause``. An error that is not one of these (Lambda timed the function out, Step Functions' own
errors) is put on the last step that started (code ``step_failed``, as the runner does for an
exception that is not a ``QuarryError``), and that step is recorded failed if it is still
``running``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidInput
from shared.sagas.definition import SagaDefinition, SagaState, SagaStep
from shared.sagas.runner import (
    FAILED,
    PENDING,
    RUNNING,
    STEP_FAILED,
    SUCCEEDED,
    SagaRunRecord,
    SagaRunStore,
    StepFailure,
    compensate,
    end_run,
    run_attempt,
)

log = logging.getLogger(__name__)

BAD_TASK = "bad_task"


class SagaTask(BaseModel):
    """A task event (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    saga: str
    step: str | None = None
    state: SagaState
    retry_count: int = Field(default=0, ge=0)
    compensate: bool = False
    finish: Literal["succeeded", "compensated", "failed"] | None = None
    error: dict[str, Any] | None = None

    def run_id(self) -> uuid.UUID:
        try:
            return uuid.UUID(str(self.state["run_id"]))
        except (KeyError, ValueError) as exc:
            raise InvalidInput("the task state needs the run_id", code=BAD_TASK) from exc


class SagaStepError(Exception):
    """A failed step as its task reports it (see the module docstring)."""

    def __init__(self, failure: StepFailure) -> None:
        super().__init__(
            json.dumps(
                {"step": failure.step, "code": failure.code, "description": failure.description}
            )
        )
        self.failure = failure


_ERROR_TYPES: dict[str, type[SagaStepError]] = {}


def step_error(step: str, exc: BaseException) -> SagaStepError:
    """The ``SagaStepError`` of ``exc`` raised by ``step``, its class named as ``exc``'s."""
    name = type(exc).__name__
    error_type = _ERROR_TYPES.get(name)
    if error_type is None:
        error_type = type(name, (SagaStepError,), {"__module__": __name__})
        _ERROR_TYPES[name] = error_type
    return error_type(StepFailure.of(step, exc))


async def run_task(
    definition: SagaDefinition, event: Mapping[str, Any], store: SagaRunStore
) -> SagaState:
    """Runs one task event of ``definition``'s machine; the state the machine goes on with."""
    try:
        task = SagaTask.model_validate(event)
    except ValidationError as exc:
        raise InvalidInput(f"not a saga task: {exc}", code=BAD_TASK) from exc
    if task.saga != definition.name:
        raise InvalidInput(f"this task runner serves the {definition.name} saga", code=BAD_TASK)
    run_id = task.run_id()
    state = dict(task.state)
    if task.finish is not None:
        await _finish(definition, store, run_id, task.finish, task.error or {}, state)
        return state
    step = _step(definition, task.step)
    if task.compensate:
        try:
            await compensate(store, run_id, step, state)
        except Exception:
            log.exception("compensation of %s failed", step.name, extra={"run_id": str(run_id)})
            raise
        return state
    try:
        await run_attempt(store, run_id, step, state, task.retry_count + 1)
    except Exception as exc:
        raise step_error(step.name, exc) from exc
    return state


@dataclasses.dataclass(frozen=True)
class CaughtError:
    """An error a Catch recorded (``{"Error", "Cause"}``), unpacked: its name, the message (a
    Lambda function's ``errorMessage``, else the cause itself: Step Functions' own, or what a
    task token's ``SendTaskFailure`` sent), and that message as JSON when it is an object (what
    Quarry's task runners report)."""

    name: str
    message: str | None
    report: dict[str, Any] | None


def caught_error(error: Mapping[str, Any]) -> CaughtError:
    cause = error.get("Cause")
    parsed = _json(cause)
    message = parsed.get("errorMessage") if isinstance(parsed, dict) else None
    if message is None:
        message = cause
    report = _json(message)
    return CaughtError(
        str(error.get("Error") or "States.Runtime"),
        str(message) if message is not None else None,
        report if isinstance(report, dict) else None,
    )


def failure_of(error: Mapping[str, Any]) -> StepFailure:
    """The failure in an error a Catch recorded: what a ``SagaStepError`` reported, else (no
    step known) ``STEP_FAILED`` with the error's name and message."""
    caught = caught_error(error)
    name, message, reported = caught.name, caught.message, caught.report
    if reported is not None and {"code", "description"} <= reported.keys():
        step = reported.get("step")
        return StepFailure(
            step if isinstance(step, str) else None,
            str(reported["code"]),
            str(reported["description"]),
        )
    return StepFailure(None, STEP_FAILED, f"{name}: {message or 'no cause given'}"[:2000])


def _step(definition: SagaDefinition, name: str | None) -> SagaStep:
    try:
        return definition.steps[definition.index_of(str(name))]
    except KeyError as exc:
        raise InvalidInput(f"unknown step {name!r}", code=BAD_TASK) from exc


async def _finish(
    definition: SagaDefinition,
    store: SagaRunStore,
    run_id: uuid.UUID,
    status: str,
    error: Mapping[str, Any],
    state: SagaState,
) -> None:
    if status == SUCCEEDED:
        await end_run(store, definition, run_id, SUCCEEDED, state)
        return
    failure = failure_of(error)
    run = await store.load(run_id)
    if run is not None:
        failure = await _settle_failed_step(definition, store, run, failure, state)
    await end_run(store, definition, run_id, status, state, failure)


async def _settle_failed_step(
    definition: SagaDefinition,
    store: SagaRunStore,
    run: SagaRunRecord,
    failure: StepFailure,
    state: SagaState,
) -> StepFailure:
    """The failure on its step: the one the error names, else the last one that started. A
    step still ``running`` is recorded failed with the error: its task never reported the end
    (Lambda timed the function out), or reported an attempt the machine did not retry after
    all."""
    if failure.step is None:
        started = [
            step.name
            for step in definition.steps
            if run.step_status.get(step.name, PENDING) != PENDING
        ]
        failure = dataclasses.replace(failure, step=started[-1] if started else None)
    if failure.step is not None and run.step_status.get(failure.step) == RUNNING:
        await store.step_finished(run.id, failure.step, FAILED, state, None, failure.description)
    return failure


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None
