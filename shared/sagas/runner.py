"""The in-process saga runner: runs steps in order, persists every transition, compensates in
reverse on failure, and resumes a failed run from the first step that did not stay done.

What it records is shared with the Step Functions tasks (``shared.sagas.task``), which run the
same definition one task at a time: an attempt of a step (``run_attempt``), a compensation
(``compensate``) and the run's end (``end_run``: the status and error, then the saga's end hook).
A run therefore reads the same, and ends the same, whichever runner ran it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from shared.errors import InvalidInput, NotFound, QuarryError
from shared.sagas.definition import RetryPolicy, SagaDefinition, SagaState, SagaStep

log = logging.getLogger(__name__)

# The error code of a run whose step raised an exception that is not a ``QuarryError``.
STEP_FAILED = "step_failed"
PENDING = "pending"  # a step not started yet
RUNNING = "running"
SUCCEEDED = "succeeded"
COMPENSATED = "compensated"  # a step failed; every compensation owed ran
FAILED = "failed"  # a step failed and a compensation failed too (or the run never started)


@dataclass(frozen=True)
class SagaRunRecord:
    id: uuid.UUID
    saga: str
    status: str
    state: SagaState
    step_status: dict[str, str]
    tenant_id: uuid.UUID | None = None
    kb_id: uuid.UUID | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class StepFailure:
    """Why a run failed: the step (None when unknown), the error's code (``STEP_FAILED`` for an
    exception that is not a ``QuarryError``) and its description (``"<class>: <message>"``)."""

    step: str | None
    code: str
    description: str

    @classmethod
    def of(cls, step: str, exc: BaseException) -> StepFailure:
        code = exc.code if isinstance(exc, QuarryError) else STEP_FAILED
        return cls(step, code, _describe(exc))

    @property
    def message(self) -> str:
        """The run's error message."""
        return f"{self.step}: {self.description}" if self.step else self.description


class SagaRunStore(Protocol):
    async def create(
        self,
        saga: str,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None,
        state: SagaState,
        step_names: list[str],
    ) -> uuid.UUID: ...

    async def load(self, run_id: uuid.UUID) -> SagaRunRecord | None: ...

    async def set_status(self, run_id: uuid.UUID, status: str) -> None: ...

    async def step_started(self, run_id: uuid.UUID, step: str, attempt: int) -> None: ...

    async def step_finished(
        self,
        run_id: uuid.UUID,
        step: str,
        status: str,
        state: SagaState,
        duration_ms: float | None,
        error: str | None = None,
    ) -> None: ...

    async def finish(
        self,
        run_id: uuid.UUID,
        status: str,
        state: SagaState,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None: ...


class SagaRunner:
    def __init__(self, store: SagaRunStore) -> None:
        self._store = store

    async def start(
        self,
        definition: SagaDefinition,
        *,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None,
        state: SagaState,
    ) -> SagaRunRecord:
        run_id = await self._store.create(
            definition.name, tenant_id, kb_id, state, [s.name for s in definition.steps]
        )
        # Steps key their private artifacts by the run.
        return await self._execute(definition, run_id, {**state, "run_id": str(run_id)}, 0)

    async def load(self, run_id: uuid.UUID) -> SagaRunRecord | None:
        return await self._store.load(run_id)

    async def resume(self, definition: SagaDefinition, run_id: uuid.UUID) -> SagaRunRecord:
        run = await self._store.load(run_id)
        if run is None:
            raise NotFound(f"saga run {run_id} does not exist", code="run_not_found")
        if run.status not in (COMPENSATED, FAILED):
            raise InvalidInput(
                f"saga run {run_id} is {run.status}; only failed runs resume", code="not_resumable"
            )
        start = next(
            (
                i
                for i, step in enumerate(definition.steps)
                if run.step_status.get(step.name) != SUCCEEDED
            ),
            len(definition.steps),
        )
        await self._store.set_status(run_id, RUNNING)
        return await self._execute(definition, run_id, dict(run.state), start)

    async def _execute(
        self, definition: SagaDefinition, run_id: uuid.UUID, state: SagaState, start: int
    ) -> SagaRunRecord:
        for index in range(start, len(definition.steps)):
            step = definition.steps[index]
            try:
                await self._run_step(run_id, step, state)
            except Exception as exc:
                return await self._fail(definition, run_id, state, index, exc)
        return await end_run(self._store, definition, run_id, SUCCEEDED, state)

    async def _run_step(self, run_id: uuid.UUID, step: SagaStep, state: SagaState) -> None:
        policy = step.retry
        for attempt in range(1, policy.attempts + 1):
            try:
                await run_attempt(self._store, run_id, step, state, attempt)
            except Exception as exc:
                if is_last_attempt(policy, attempt, exc):
                    raise
                log.warning("saga step %s failed (attempt %d), retrying", step.name, attempt)
                await asyncio.sleep(policy.backoff_s * 2 ** (attempt - 1))
            else:
                return

    async def _fail(
        self,
        definition: SagaDefinition,
        run_id: uuid.UUID,
        state: SagaState,
        failed_index: int,
        exc: Exception,
    ) -> SagaRunRecord:
        failure = StepFailure.of(definition.steps[failed_index].name, exc)
        log.warning(
            "saga %s failed at %s: %s",
            definition.name,
            failure.step,
            failure.description,
            extra={"run_id": str(run_id)},
        )
        compensation_failed = False
        # The failed step is compensated too: it may have left part of its work behind.
        for step in reversed(definition.steps[: failed_index + 1]):
            try:
                await compensate(self._store, run_id, step, state)
            except Exception:
                log.exception("compensation of %s failed", step.name)
                compensation_failed = True
        status = FAILED if compensation_failed else COMPENSATED
        return await end_run(self._store, definition, run_id, status, state, failure)


def is_last_attempt(policy: RetryPolicy, attempt: int, exc: BaseException) -> bool:
    """Whether a failed attempt is the step's last: none is left, the policy does not retry this
    error, or the caller caused it (another attempt cannot help)."""
    return (
        attempt >= policy.attempts
        or not isinstance(exc, policy.retry_on)
        or (isinstance(exc, QuarryError) and exc.status_code < 500)
    )


async def run_attempt(
    store: SagaRunStore, run_id: uuid.UUID, step: SagaStep, state: SagaState, attempt: int
) -> None:
    """One attempt of ``step``, recorded: started, then succeeded (its updates merged into
    ``state``) or, when it is the step's last attempt, failed with the error. Raises the step's
    error."""
    await store.step_started(run_id, step.name, attempt)
    started = time.perf_counter()
    try:
        updates = await step.action(state)
    except Exception as exc:
        if is_last_attempt(step.retry, attempt, exc):
            await store.step_finished(
                run_id, step.name, FAILED, state, _elapsed_ms(started), _describe(exc)
            )
        raise
    if updates:
        state.update(updates)
    await store.step_finished(run_id, step.name, SUCCEEDED, state, _elapsed_ms(started))


async def compensate(
    store: SagaRunStore, run_id: uuid.UUID, step: SagaStep, state: SagaState
) -> None:
    """Runs the compensation of ``step``, if it has one, and records the step compensated.
    Raises the compensation's error (nothing is recorded then)."""
    if step.compensation is None:
        return
    await step.compensation(state)
    await store.step_finished(run_id, step.name, COMPENSATED, state, None)


async def end_run(
    store: SagaRunStore,
    definition: SagaDefinition,
    run_id: uuid.UUID,
    status: str,
    state: SagaState,
    failure: StepFailure | None = None,
) -> SagaRunRecord:
    """Records how a run ended (``SUCCEEDED``, or ``COMPENSATED``/``FAILED`` with ``failure``),
    then runs the saga's hook for that end (``on_success`` / ``on_failure``); the run as
    recorded."""
    await store.finish(
        run_id,
        status,
        state,
        error_code=None if failure is None else failure.code,
        error_message=None if failure is None else failure.message,
    )
    run = await store.load(run_id)
    if run is None:
        raise NotFound(f"saga run {run_id} does not exist", code="run_not_found")
    hook = definition.on_success if status == SUCCEEDED else definition.on_failure
    if hook is not None:
        await hook(run)
    return run


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, QuarryError) else str(exc)
    return f"{type(exc).__name__}: {message}"[:2000]
