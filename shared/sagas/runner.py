"""The in-process saga runner: runs steps in order, persists every transition, compensates in
reverse on failure, and resumes a failed run from the first step that did not stay done."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from shared.errors import InvalidInput, NotFound, QuarryError
from shared.sagas.definition import SagaDefinition, SagaState, SagaStep

log = logging.getLogger(__name__)


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
        if run.status not in ("compensated", "failed"):
            raise InvalidInput(
                f"saga run {run_id} is {run.status}; only failed runs resume", code="not_resumable"
            )
        start = next(
            (
                i
                for i, step in enumerate(definition.steps)
                if run.step_status.get(step.name) != "succeeded"
            ),
            len(definition.steps),
        )
        await self._store.set_status(run_id, "running")
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
        await self._store.finish(run_id, "succeeded", state)
        return await self._reload(run_id)

    async def _run_step(self, run_id: uuid.UUID, step: SagaStep, state: SagaState) -> None:
        policy = step.retry
        for attempt in range(1, policy.attempts + 1):
            await self._store.step_started(run_id, step.name, attempt)
            started = time.perf_counter()
            try:
                updates = await step.action(state)
            except policy.retry_on as exc:
                if attempt == policy.attempts or (
                    isinstance(exc, QuarryError) and exc.status_code < 500
                ):
                    duration_ms = (time.perf_counter() - started) * 1000
                    await self._store.step_finished(
                        run_id, step.name, "failed", state, duration_ms, _describe(exc)
                    )
                    raise
                log.warning("saga step %s failed (attempt %d), retrying", step.name, attempt)
                await asyncio.sleep(policy.backoff_s * 2 ** (attempt - 1))
                continue
            except Exception as exc:
                duration_ms = (time.perf_counter() - started) * 1000
                await self._store.step_finished(
                    run_id, step.name, "failed", state, duration_ms, _describe(exc)
                )
                raise
            if updates:
                state.update(updates)
            duration_ms = (time.perf_counter() - started) * 1000
            await self._store.step_finished(run_id, step.name, "succeeded", state, duration_ms)
            return

    async def _fail(
        self,
        definition: SagaDefinition,
        run_id: uuid.UUID,
        state: SagaState,
        failed_index: int,
        exc: Exception,
    ) -> SagaRunRecord:
        log.warning(
            "saga %s failed at %s: %s",
            definition.name,
            definition.steps[failed_index].name,
            _describe(exc),
            extra={"run_id": str(run_id)},
        )
        compensation_failed = False
        # The failed step is compensated too: it may have left part of its work behind.
        for step in reversed(definition.steps[: failed_index + 1]):
            if step.compensation is None:
                continue
            try:
                await step.compensation(state)
            except Exception:
                log.exception("compensation of %s failed", step.name)
                compensation_failed = True
                continue
            await self._store.step_finished(run_id, step.name, "compensated", state, None)
        code = exc.code if isinstance(exc, QuarryError) else "step_failed"
        await self._store.finish(
            run_id,
            "failed" if compensation_failed else "compensated",
            state,
            error_code=code,
            error_message=f"{definition.steps[failed_index].name}: {_describe(exc)}",
        )
        return await self._reload(run_id)

    async def _reload(self, run_id: uuid.UUID) -> SagaRunRecord:
        run = await self._store.load(run_id)
        assert run is not None
        return run


def _describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, QuarryError) else str(exc)
    return f"{type(exc).__name__}: {message}"[:2000]
