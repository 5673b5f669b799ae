"""The saga runner against an in-memory run store: order, retries, compensation, resume."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.errors import DependencyUnavailable, InvalidInput
from shared.sagas.definition import RetryPolicy, SagaDefinition, SagaState, SagaStep
from shared.sagas.runner import SagaRunner, SagaRunRecord
from shared.sagas.task import run_task

pytestmark = pytest.mark.unit


class InMemoryRunStore:
    def __init__(self) -> None:
        self.runs: dict[uuid.UUID, dict[str, Any]] = {}

    async def create(
        self,
        saga: str,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None,
        state: SagaState,
        step_names: list[str],
    ) -> uuid.UUID:
        run_id = uuid.uuid4()
        self.runs[run_id] = {
            "saga": saga,
            "status": "running",
            "state": state,
            "steps": dict.fromkeys(step_names, "pending"),
            "error": (None, None),
        }
        return run_id

    async def load(self, run_id: uuid.UUID) -> SagaRunRecord | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        return SagaRunRecord(
            run_id,
            run["saga"],
            run["status"],
            dict(run["state"]),
            dict(run["steps"]),
            error_code=run["error"][0],
            error_message=run["error"][1],
        )

    async def set_status(self, run_id: uuid.UUID, status: str) -> None:
        self.runs[run_id]["status"] = status

    async def step_started(self, run_id: uuid.UUID, step: str, attempt: int) -> None:
        self.runs[run_id]["steps"][step] = "running"

    async def step_finished(
        self,
        run_id: uuid.UUID,
        step: str,
        status: str,
        state: SagaState,
        duration_ms: float | None,
        error: str | None = None,
    ) -> None:
        self.runs[run_id]["steps"][step] = status
        self.runs[run_id]["state"] = dict(state)

    async def finish(
        self,
        run_id: uuid.UUID,
        status: str,
        state: SagaState,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        self.runs[run_id].update(
            status=status, state=dict(state), error=(error_code, error_message)
        )


def recording_saga(
    log: list[str],
    *,
    fail: dict[str, int] | None = None,
    retry: RetryPolicy | None = None,
    failing_compensation: str | None = None,
) -> SagaDefinition:
    """Four steps; ``fail[name]`` = how many times that step fails before it succeeds."""
    remaining = dict(fail or {})

    def step(name: str) -> SagaStep:
        async def action(state: SagaState) -> SagaState:
            log.append(name)
            if remaining.get(name, 0) > 0:
                remaining[name] -= 1
                raise DependencyUnavailable(f"{name} failed")
            return {name: True}

        async def compensation(state: SagaState) -> None:
            log.append(f"undo {name}")
            if name == failing_compensation:
                raise RuntimeError("cannot undo")

        return SagaStep(name, action, compensation, retry or RetryPolicy())

    return SagaDefinition("test", tuple(step(n) for n in ("a", "b", "c", "d")))


async def test_steps_run_in_order_and_merge_state() -> None:
    log: list[str] = []
    run = await SagaRunner(InMemoryRunStore()).start(
        recording_saga(log), tenant_id=uuid.uuid4(), kb_id=None, state={"x": 1}
    )
    assert run.status == "succeeded"
    assert log == ["a", "b", "c", "d"]
    assert run.state == {"x": 1, "run_id": str(run.id), "a": True, "b": True, "c": True, "d": True}


@pytest.mark.parametrize("failing", ["a", "b", "c", "d"])
async def test_failure_compensates_completed_steps_in_reverse(failing: str) -> None:
    log: list[str] = []
    run = await SagaRunner(InMemoryRunStore()).start(
        recording_saga(log, fail={failing: 1}), tenant_id=uuid.uuid4(), kb_id=None, state={}
    )
    done = ["a", "b", "c", "d"][: "abcd".index(failing) + 1]
    assert run.status == "compensated"
    assert run.error_code == "dependency_unavailable"
    assert log == done + [f"undo {name}" for name in reversed(done)]


async def test_retries_honour_the_policy() -> None:
    log: list[str] = []
    run = await SagaRunner(InMemoryRunStore()).start(
        recording_saga(log, fail={"b": 2}, retry=RetryPolicy(attempts=3)),
        tenant_id=uuid.uuid4(),
        kb_id=None,
        state={},
    )
    assert run.status == "succeeded"
    assert log == ["a", "b", "b", "b", "c", "d"]

    log.clear()
    run = await SagaRunner(InMemoryRunStore()).start(
        recording_saga(log, fail={"b": 5}, retry=RetryPolicy(attempts=2)),
        tenant_id=uuid.uuid4(),
        kb_id=None,
        state={},
    )
    assert run.status == "compensated"
    assert log.count("b") == 2


async def test_client_errors_are_not_retried() -> None:
    calls = 0

    async def bad(state: SagaState) -> SagaState:
        nonlocal calls
        calls += 1
        raise InvalidInput("bad", code="bad_thing")

    saga = SagaDefinition("t", (SagaStep("bad", bad, retry=RetryPolicy(attempts=5)),))
    run = await SagaRunner(InMemoryRunStore()).start(
        saga, tenant_id=uuid.uuid4(), kb_id=None, state={}
    )
    assert (run.status, run.error_code, calls) == ("compensated", "bad_thing", 1)


async def test_failed_compensation_marks_the_run_failed() -> None:
    log: list[str] = []
    run = await SagaRunner(InMemoryRunStore()).start(
        recording_saga(log, fail={"c": 1}, failing_compensation="b"),
        tenant_id=uuid.uuid4(),
        kb_id=None,
        state={},
    )
    assert run.status == "failed"
    assert log[-3:] == ["undo c", "undo b", "undo a"]  # one failure does not stop the rest


async def test_resume_reruns_from_the_first_step_not_done() -> None:
    log: list[str] = []
    store = InMemoryRunStore()
    runner = SagaRunner(store)
    saga = recording_saga(log, fail={"c": 1})
    run = await runner.start(saga, tenant_id=uuid.uuid4(), kb_id=None, state={})
    log.clear()
    resumed = await runner.resume(saga, run.id)
    assert resumed.status == "succeeded"
    assert log == ["a", "b", "c", "d"]  # every step was compensated, so every step re-runs
    with pytest.raises(InvalidInput, match="only failed runs resume"):
        await runner.resume(saga, run.id)


async def test_task_runner_runs_one_step_or_its_compensation() -> None:
    log: list[str] = []
    saga = recording_saga(log)
    state = await run_task(saga, {"saga": "test", "step": "b", "state": {"run_id": "r"}})
    assert state == {"run_id": "r", "b": True}
    await run_task(saga, {"saga": "test", "step": "b", "state": state, "compensate": True})
    assert log == ["b", "undo b"]
    with pytest.raises(InvalidInput):
        await run_task(saga, {"saga": "other", "step": "b", "state": state})
    with pytest.raises(InvalidInput):
        await run_task(saga, {"saga": "test", "step": "b", "state": {}})


def test_duplicate_step_names_are_refused() -> None:
    async def noop(state: SagaState) -> None:
        return None

    with pytest.raises(ValueError, match="duplicate"):
        SagaDefinition("x", (SagaStep("a", noop), SagaStep("a", noop)))
