"""The saga runner and the Step Functions tasks against an in-memory run store: order, retries,
compensation, resume, the end hooks; and that a run recorded by the tasks reads as the runner
records it."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest

from shared.errors import DependencyUnavailable, InvalidInput
from shared.sagas.definition import RetryPolicy, SagaDefinition, SagaState, SagaStep
from shared.sagas.runner import SagaRunner, SagaRunRecord
from shared.sagas.task import SagaStepError, run_task

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
            "attempts": {},
            "step_errors": {},
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
        self.runs[run_id]["attempts"][step] = attempt
        self.runs[run_id]["step_errors"].pop(step, None)

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
        if error is not None:
            self.runs[run_id]["step_errors"][step] = error

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


class EndHooks:
    """A saga's end hooks that note the run each was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, SagaRunRecord]] = []

    async def on_success(self, run: SagaRunRecord) -> None:
        self.calls.append(("success", run))

    async def on_failure(self, run: SagaRunRecord) -> None:
        self.calls.append(("failure", run))

    def attach(self, saga: SagaDefinition) -> SagaDefinition:
        return dataclasses.replace(saga, on_success=self.on_success, on_failure=self.on_failure)


@pytest.mark.parametrize("fail", [None, "c"])
async def test_the_runner_calls_the_end_hook_with_the_recorded_run(fail: str | None) -> None:
    hooks = EndHooks()
    saga = hooks.attach(recording_saga([], fail={fail: 1} if fail else None))
    run = await SagaRunner(InMemoryRunStore()).start(
        saga, tenant_id=uuid.uuid4(), kb_id=None, state={}
    )
    assert hooks.calls == [("failure" if fail else "success", run)]
    assert run.status == ("compensated" if fail else "succeeded")


# --- Step Functions tasks -----------------------------------------------------------------------
async def new_run(store: InMemoryRunStore, saga: SagaDefinition) -> SagaState:
    run_id = await store.create(saga.name, uuid.uuid4(), None, {}, [s.name for s in saga.steps])
    return {"run_id": str(run_id)}


def caught(exc: BaseException) -> dict[str, Any]:
    """The error a step's Catch records when the function raised ``exc`` (Lambda's report)."""
    report = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": []}
    return {"Error": type(exc).__name__, "Cause": json.dumps(report)}


async def test_a_step_task_records_its_attempt_and_answers_the_new_state() -> None:
    log: list[str] = []
    store = InMemoryRunStore()
    saga = recording_saga(log)
    state = await new_run(store, saga)
    run_id = uuid.UUID(state["run_id"])
    state = await run_task(saga, {"saga": "test", "step": "b", "state": state}, store)
    assert state == {"run_id": str(run_id), "b": True}
    run = store.runs[run_id]
    assert run["steps"] == {"a": "pending", "b": "succeeded", "c": "pending", "d": "pending"}
    assert run["state"] == state
    assert run["attempts"] == {"b": 1}
    await run_task(saga, {"saga": "test", "step": "b", "state": state, "compensate": True}, store)
    assert log == ["b", "undo b"]
    assert run["steps"]["b"] == "compensated"
    assert run["status"] == "running"  # the end is the machine's last task


async def test_a_failed_step_reports_its_class_name_and_is_recorded_on_its_last_attempt() -> None:
    store = InMemoryRunStore()
    saga = recording_saga([], fail={"b": 5}, retry=RetryPolicy(attempts=3))
    state = await new_run(store, saga)
    run = store.runs[uuid.UUID(state["run_id"])]
    task = {"saga": "test", "step": "b", "state": state, "retry_count": 1}
    with pytest.raises(SagaStepError) as first:
        await run_task(saga, task, store)
    # What the machine's retriers match: the step's own exception class name.
    assert type(first.value).__name__ == "DependencyUnavailable"
    assert json.loads(str(first.value)) == {
        "step": "b",
        "code": "dependency_unavailable",
        "description": "DependencyUnavailable: b failed",
    }
    assert (run["steps"]["b"], run["attempts"]["b"]) == ("running", 2)  # to be retried
    with pytest.raises(SagaStepError):
        await run_task(saga, {**task, "retry_count": 2}, store)
    assert (run["steps"]["b"], run["attempts"]["b"]) == ("failed", 3)
    assert run["step_errors"]["b"] == "DependencyUnavailable: b failed"


async def test_a_failed_compensation_raises_and_records_nothing() -> None:
    store = InMemoryRunStore()
    saga = recording_saga([], failing_compensation="b")
    state = await new_run(store, saga)
    with pytest.raises(RuntimeError, match="cannot undo"):
        await run_task(
            saga, {"saga": "test", "step": "b", "state": state, "compensate": True}, store
        )
    assert store.runs[uuid.UUID(state["run_id"])]["steps"]["b"] == "pending"


async def test_the_success_task_ends_the_run_and_calls_the_hook() -> None:
    store = InMemoryRunStore()
    hooks = EndHooks()
    saga = hooks.attach(recording_saga([]))
    state = await new_run(store, saga)
    for step in saga.steps:
        state = await run_task(saga, {"saga": "test", "step": step.name, "state": state}, store)
    finish = {"saga": "test", "finish": "succeeded", "state": state}
    assert await run_task(saga, finish, store) == state
    run = await store.load(uuid.UUID(state["run_id"]))
    assert run is not None
    assert (run.status, run.error_code, run.error_message) == ("succeeded", None, None)
    assert run.state == state
    assert hooks.calls == [("success", run)]


async def machine(saga: SagaDefinition, store: InMemoryRunStore, state: SagaState) -> SagaState:
    """What the compiled machine does, task by task, for a saga whose steps try once."""
    for index, step in enumerate(saga.steps):
        try:
            state = await run_task(
                saga, {"saga": saga.name, "step": step.name, "state": state}, store
            )
        except SagaStepError as exc:
            compensation_failed = False
            for done in reversed(saga.steps[: index + 1]):
                task = {"saga": saga.name, "step": done.name, "state": state, "compensate": True}
                try:
                    await run_task(saga, task, store)
                except Exception:
                    compensation_failed = True
            status = "failed" if compensation_failed else "compensated"
            finish = {"saga": saga.name, "finish": status, "state": state, "error": caught(exc)}
            return await run_task(saga, finish, store)
    return await run_task(saga, {"saga": saga.name, "finish": "succeeded", "state": state}, store)


@pytest.mark.parametrize(
    ("fail", "failing_compensation"), [(None, None), ("a", None), ("c", None), ("c", "b")]
)
async def test_a_run_on_the_tasks_reads_and_ends_as_the_runners(
    fail: str | None, failing_compensation: str | None
) -> None:
    def saga(hooks: EndHooks) -> SagaDefinition:
        failures = {fail: 1} if fail else None
        return hooks.attach(
            recording_saga([], fail=failures, failing_compensation=failing_compensation)
        )

    local_hooks, cloud_hooks = EndHooks(), EndHooks()
    local = await SagaRunner(InMemoryRunStore()).start(
        saga(local_hooks), tenant_id=uuid.uuid4(), kb_id=None, state={}
    )
    store = InMemoryRunStore()
    definition = saga(cloud_hooks)
    state = await machine(definition, store, await new_run(store, definition))
    cloud = await store.load(uuid.UUID(state["run_id"]))
    assert cloud is not None
    assert (cloud.status, cloud.error_code, cloud.error_message) == (
        local.status,
        local.error_code,
        local.error_message,
    )
    assert cloud.step_status == local.step_status
    assert [kind for kind, _ in cloud_hooks.calls] == [kind for kind, _ in local_hooks.calls]
    assert cloud_hooks.calls[0][1] == cloud


async def test_an_error_the_task_did_not_report_is_put_on_the_running_step() -> None:
    """Lambda timed the function out during ``c``: nothing recorded the failure."""
    store = InMemoryRunStore()
    hooks = EndHooks()
    saga = hooks.attach(recording_saga([]))
    state = await new_run(store, saga)
    run_id = uuid.UUID(state["run_id"])
    for step in ("a", "b"):
        state = await run_task(saga, {"saga": "test", "step": step, "state": state}, store)
    await store.step_started(run_id, "c", 1)
    error = {"Error": "States.Timeout", "Cause": "the task timed out"}
    finish = {"saga": "test", "finish": "compensated", "state": state, "error": error}
    await run_task(saga, finish, store)
    run = await store.load(run_id)
    assert run is not None
    assert (run.status, run.error_code) == ("compensated", "step_failed")
    assert run.error_message == "c: States.Timeout: the task timed out"
    assert run.step_status["c"] == "failed"
    assert store.runs[run_id]["step_errors"]["c"] == "States.Timeout: the task timed out"
    assert hooks.calls == [("failure", run)]


async def test_an_error_before_any_step_started_names_no_step() -> None:
    store = InMemoryRunStore()
    saga = recording_saga([])
    state = await new_run(store, saga)
    report = {"errorType": "ResourceNotFoundException", "errorMessage": "no such function"}
    error = {"Error": "Lambda.ResourceNotFoundException", "Cause": json.dumps(report)}
    await run_task(
        saga, {"saga": "test", "finish": "failed", "state": state, "error": error}, store
    )
    run = await store.load(uuid.UUID(state["run_id"]))
    assert run is not None
    assert (run.status, run.error_code) == ("failed", "step_failed")
    assert run.error_message == "Lambda.ResourceNotFoundException: no such function"


@pytest.mark.parametrize(
    "task",
    [
        {"saga": "other", "step": "b", "state": {"run_id": str(uuid.uuid4())}},
        {"saga": "test", "step": "b", "state": {}},
        {"saga": "test", "step": "b", "state": {"run_id": "not-a-uuid"}},
        {"saga": "test", "step": "nope", "state": {"run_id": str(uuid.uuid4())}},
        {"saga": "test", "step": "b"},
        {"saga": "test", "finish": "maybe", "state": {"run_id": str(uuid.uuid4())}},
        {"saga": "test", "step": "b", "state": {"run_id": str(uuid.uuid4())}, "extra": 1},
    ],
)
async def test_bad_tasks_are_refused(task: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as refused:
        await run_task(recording_saga([]), task, InMemoryRunStore())
    assert refused.value.code == "bad_task"


def test_duplicate_step_names_are_refused() -> None:
    async def noop(state: SagaState) -> None:
        return None

    with pytest.raises(ValueError, match="duplicate"):
        SagaDefinition("x", (SagaStep("a", noop), SagaStep("a", noop)))
