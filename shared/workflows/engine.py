"""The local workflow engine: an asyncio executor over a definition's DAG, with every
transition persisted (``WorkflowRepository``).

**Scheduling.** A node list runs as a DAG: a node starts once the nodes it depends on finished,
and independent nodes run concurrently. ``branch`` runs the list its condition picks (the other
list's nodes are ``skipped``), ``parallel`` runs its branches concurrently, ``map`` runs its body
once per item with at most ``max_concurrency`` items at a time. A leaf node's attempt has a
timeout (``asyncio.timeout``); a failed attempt is retried as its ``retry`` policy says.

**Node keys.** Each node run is persisted under a key: the node id, or inside a map body
``<map id>[<index>].<id>`` (nested maps chain). The key is what resume recognises.

**Statuses.** A run is ``running``, then ``waiting_approval`` (paused: nothing can run until an
approval is decided), ``succeeded``, ``failed``, ``compensated`` or ``cancelled``. When a node
fails for good, the other nodes already running finish, nothing new starts, and the
compensations of the completed nodes run in reverse completion order (each with its own retry
and timeout; a node compensated successfully becomes ``compensated``, one whose compensation
failed ``compensation_failed``). The run ends:

- ``compensated`` when the workflow defines compensations and every compensation owed ran
  (possibly none: the failure came before any compensable node completed);
- ``failed`` when the workflow defines no compensation at all, or a compensation failed.

Either way the run keeps the failure's ``error_code``/``error_message`` and ``failed_node``.

**Approvals.** An approval node records ``waiting_approval`` with its ``expires_at``; the rest of
the DAG goes on as far as it can, then the run pauses. Approving marks the node ``succeeded``
and continues the run; rejecting (or the approval timing out) fails the run at that node
(compensations run as above).

**Resume** (a ``failed`` or ``compensated`` run) walks the DAG again: a node whose run
``succeeded`` is not run again (its persisted output is used), everything else runs, starting at
the failed node. Compensated nodes are run again, since their effects were undone.

**Cancel** stops a ``running`` or ``waiting_approval`` run: the engine checks the run's status
before it starts each node and stops when it is no longer ``running``; the service also cancels
the run's task in this process. Completed nodes keep their effects (no compensation), and a
cancelled run does not resume.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.auth.authenticator import principal_from_context
from shared.auth.rbac import Principal
from shared.db.models import WorkflowNodeRun, WorkflowRun, as_utc
from shared.db.workflow_repository import WorkflowRepository
from shared.errors import InvalidInput, QuarryError
from shared.observability.metrics import MetricsSink
from shared.workflows.asl import NODE_TIMEOUT
from shared.workflows.definition import (
    LEAF_TYPES,
    ApprovalNode,
    BranchNode,
    LeafNode,
    MapNode,
    Node,
    ParallelNode,
    WorkflowDefinition,
    WorkflowGraph,
)
from shared.workflows.expressions import condition, resolve
from shared.workflows.nodes import NodeCall, NodeExecutor, NodeResult, Step

log = logging.getLogger(__name__)


class RunStatus(StrEnum):
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"


class NodeStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING_APPROVAL = "waiting_approval"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    CANCELLED = "cancelled"


FINISHED_RUN_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.COMPENSATED, RunStatus.CANCELLED}
)
RESUMABLE_RUN_STATUSES = frozenset({RunStatus.FAILED, RunStatus.COMPENSATED})
APPROVAL_REJECTED = "approval_rejected"
APPROVAL_EXPIRED = "approval_expired"
_MAP_SEGMENT = re.compile(r"^(?P<id>[a-z][a-z0-9_]*)\[(?P<index>\d+)\]$")


class StepFailed(Exception):
    """A step failed for good (after its attempts): the error's code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NodeFailed(StepFailed):
    """A node of the run failed for good."""

    def __init__(self, key: str, code: str, message: str) -> None:
        super().__init__(code, message)
        self.key = key


class _Stopped(Exception):
    """The run is no longer ``running`` (cancelled): stop starting nodes."""


class _Paused:
    """A node (or a list) that cannot finish until an approval is decided."""


PAUSED = _Paused()


@dataclass
class _Scope:
    """A node list being run: its key prefix and the context its nodes see."""

    prefix: str
    context: dict[str, Any]

    @property
    def outputs(self) -> dict[str, Any]:
        nodes: dict[str, Any] = self.context["nodes"]
        return nodes

    def record(self, node_id: str, status: str, output: Any) -> None:
        self.outputs[node_id] = {"status": status, "output": output}


@dataclass
class _Execution:
    run: WorkflowRun
    definition: WorkflowDefinition
    graph: WorkflowGraph
    restored: dict[str, WorkflowNodeRun] = field(default_factory=dict)


class WorkflowEngine:
    def __init__(
        self,
        repository: WorkflowRepository,
        executor: NodeExecutor,
        metrics: MetricsSink,
        *,
        default_timeout_s: float,
        default_approval_timeout_s: float,
        max_map_items: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._repository = repository
        self._metrics = metrics
        self._recorder = RunRecorder(
            repository, executor, metrics, default_timeout_s=default_timeout_s, clock=clock
        )
        self._approval_timeout_s = default_approval_timeout_s
        self._max_map_items = max_map_items
        self._clock = clock
        self._sleep = sleep

    # --- the run -------------------------------------------------------------------------
    async def execute(self, run: WorkflowRun, definition: WorkflowDefinition) -> WorkflowRun:
        """Runs (or continues) ``run``, which must be ``running``, until it finishes or pauses;
        the run as persisted afterwards."""
        rows = await self._repository.node_runs(run.tenant_id, run.id)
        execution = _Execution(run, definition, definition.graph, {r.node_key: r for r in rows})
        scope = _Scope("", {"input": run.input, "nodes": {}})
        try:
            outcome = await self._run_list(execution, definition.nodes, scope)
            if outcome is PAUSED:
                await self._repository.transition_run(
                    run.tenant_id,
                    run.id,
                    from_statuses=[RunStatus.RUNNING],
                    to_status=RunStatus.WAITING_APPROVAL,
                    context=scope.context,
                )
            else:
                await self._succeed(execution, scope)
        except NodeFailed as failure:
            await self.fail(run, definition, failure, context=scope.context)
        except _Stopped:
            log.info("workflow run %s stopped: no longer running", run.id)
        return await self._repository.get_run(run.tenant_id, run.id)

    async def _succeed(self, execution: _Execution, scope: _Scope) -> None:
        run, definition = execution.run, execution.definition
        try:
            if definition.output is None:
                last = definition.nodes[-1].id
                output = scope.outputs[last]["output"]
            else:
                output = resolve(definition.output, scope.context, keep_secret_templates=False)
        except QuarryError as exc:
            raise NodeFailed("output", exc.code, exc.message) from exc
        await self._finish(run, RunStatus.SUCCEEDED, output=output, context=scope.context)

    async def fail(
        self,
        run: WorkflowRun,
        definition: WorkflowDefinition,
        failure: NodeFailed,
        *,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Compensates the completed nodes in reverse completion order and ends the run
        ``compensated`` or ``failed`` (see the module docstring)."""
        tenant_id = run.tenant_id
        graph = definition.graph
        log.warning(
            "workflow run %s failed at %s (%s): %s",
            run.id,
            failure.key,
            failure.code,
            failure.message,
            extra={"run_id": str(run.id)},
        )
        rows = list(await self._repository.node_runs(tenant_id, run.id))
        for row in rows:
            if row.status == NodeStatus.WAITING_APPROVAL:
                await self._repository.transition_node(
                    tenant_id,
                    run.id,
                    row.node_key,
                    from_status=NodeStatus.WAITING_APPROVAL,
                    to_status=NodeStatus.CANCELLED,
                    finished_at=self._clock(),
                )
        owed = sorted(
            (
                row
                for row in rows
                if row.status == NodeStatus.SUCCEEDED
                and _compensation(graph.node(row.node_id)) is not None
            ),
            key=lambda row: as_utc(row.finished_at or row.started_at or run.created_at),
            reverse=True,
        )
        compensation_failed = False
        for row in owed:
            node = graph.node(row.node_id)
            step = _compensation(node)
            assert step is not None
            call_context = context_at(row.node_key, rows, run.input)
            try:
                config = resolve(step.templated(), call_context, keep_secret_templates=True)
                call = NodeCall(
                    tenant_id, run.id, row.node_key, call_context, acting_principal(run)
                )
                await self._attempts(step, config, call)
            except (StepFailed, QuarryError) as exc:
                compensation_failed = True
                await self._repository.transition_node(
                    tenant_id,
                    run.id,
                    row.node_key,
                    from_status=NodeStatus.SUCCEEDED,
                    to_status=NodeStatus.COMPENSATION_FAILED,
                    error_code=exc.code,
                    error_message=exc.message,
                )
                self._metrics.increment("workflow_compensations", outcome="failed")
                continue
            await self._repository.transition_node(
                tenant_id,
                run.id,
                row.node_key,
                from_status=NodeStatus.SUCCEEDED,
                to_status=NodeStatus.COMPENSATED,
            )
            self._metrics.increment("workflow_compensations", outcome="succeeded")
        defines_compensation = any(
            _compensation(graph.node(node_id)) is not None for node_id in graph.node_ids()
        )
        status = (
            RunStatus.COMPENSATED
            if defines_compensation and not compensation_failed
            else RunStatus.FAILED
        )
        await self._finish(
            run,
            status,
            context=context if context is not None else context_at("", rows, run.input),
            error_code=failure.code,
            error_message=f"{failure.key}: {failure.message}"[:4000],
            failed_node=failure.key,
        )

    async def _finish(
        self,
        run: WorkflowRun,
        status: RunStatus,
        *,
        context: dict[str, Any],
        output: Any = None,
        error_code: str | None = None,
        error_message: str | None = None,
        failed_node: str | None = None,
    ) -> None:
        await self._recorder.finish(
            run,
            status,
            from_statuses=[RunStatus.RUNNING],
            context=context,
            output=output,
            error_code=error_code,
            error_message=error_message,
            failed_node=failed_node,
        )

    # --- node lists ----------------------------------------------------------------------
    async def _run_list(
        self, execution: _Execution, nodes: Sequence[Node], scope: _Scope
    ) -> _Paused | None:
        """Runs one node list as a DAG; PAUSED if some of it waits for an approval. A node
        failure is raised once the nodes already running have finished."""
        graph = execution.graph
        pending = list(graph.order(nodes))
        finished: set[str] = set()
        running: dict[asyncio.Task[Any], str] = {}
        failure: BaseException | None = None
        paused = False
        try:
            while True:
                if failure is None:
                    for node in [n for n in pending if graph.dependencies(n.id) <= finished]:
                        pending.remove(node)
                        task = asyncio.create_task(self._run_node(execution, node, scope))
                        running[task] = node.id
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    node_id = running.pop(task)
                    error = task.exception()
                    if error is not None:
                        failure = failure or error
                    elif task.result() is PAUSED:
                        paused = True
                    else:
                        finished.add(node_id)
        finally:
            for task in running:
                task.cancel()
        if failure is not None:
            raise failure
        return PAUSED if paused or pending else None

    async def _run_node(self, execution: _Execution, node: Node, scope: _Scope) -> Any:
        key = scope.prefix + node.id
        prior = execution.restored.get(key)
        if prior is not None and prior.status == NodeStatus.SUCCEEDED:
            _restore(execution, node, scope)
            return prior.output
        run = execution.run
        if await self._repository.run_status(run.tenant_id, run.id) != RunStatus.RUNNING:
            raise _Stopped
        if isinstance(node, ApprovalNode):
            return await self._approval(execution, node, scope, key)
        if isinstance(node, BranchNode):
            outcome: Any = await self._branch(execution, node, scope, key)
        elif isinstance(node, ParallelNode):
            outcome = await self._parallel(execution, node, scope, key)
        elif isinstance(node, MapNode):
            outcome = await self._map(execution, node, scope, key)
        else:
            outcome = await self._leaf(execution, node, scope, key)
        if outcome is not PAUSED:
            scope.record(node.id, NodeStatus.SUCCEEDED, outcome)
        return outcome

    async def _leaf(self, execution: _Execution, node: LeafNode, scope: _Scope, key: str) -> Any:
        run = execution.run
        save = self._recorder.saver(run, key, node.id, node.type)
        try:
            config = resolve(node.templated(), scope.context, keep_secret_templates=True)
        except QuarryError as exc:
            await self._recorder.refused(save, exc, attempt=1, started_at=self._clock())
            raise NodeFailed(key, exc.code, exc.message) from exc
        call = NodeCall(run.tenant_id, run.id, key, scope.context, acting_principal(run))
        result = await self._attempts(node, config, call, save=save)
        return result.output

    async def _attempts(
        self,
        step: Step,
        config: dict[str, Any],
        call: NodeCall,
        *,
        save: Saver | None = None,
    ) -> NodeResult:
        """Runs a step under its timeout and retry policy; raises ``StepFailed`` (``NodeFailed``
        for a node) once no attempt is left."""
        attempts = step.retry.attempts
        for attempt in range(1, attempts + 1):
            if save is not None:
                await save(
                    status=NodeStatus.RUNNING,
                    attempt=attempt,
                    input=config,
                    output=None,
                    error_code=None,
                    error_message=None,
                    started_at=self._clock(),
                    finished_at=None,
                    duration_ms=None,
                )
            outcome = await self._recorder.attempt(step, config, call, save=save)
            if isinstance(outcome, NodeResult):
                return outcome
            if attempt < attempts and step.retry.retries(
                outcome.code, callers_fault=outcome.callers_fault
            ):
                log.warning(
                    "workflow step %s failed (%s, attempt %d of %d); retrying",
                    call.node_key,
                    outcome.code,
                    attempt,
                    attempts,
                )
                await self._sleep(step.retry.delay_s(attempt))
                continue
            if save is not None:
                raise NodeFailed(call.node_key, outcome.code, outcome.message)
            raise StepFailed(outcome.code, outcome.message)
        raise AssertionError("unreachable: a policy has at least one attempt")

    # --- approvals and containers --------------------------------------------------------
    async def _approval(
        self, execution: _Execution, node: ApprovalNode, scope: _Scope, key: str
    ) -> _Paused:
        prior = execution.restored.get(key)
        if prior is not None and prior.status == NodeStatus.WAITING_APPROVAL:
            return PAUSED
        try:
            message = resolve(node.message, scope.context, keep_secret_templates=False)
        except QuarryError as exc:
            raise NodeFailed(key, exc.code, exc.message) from exc
        await self._recorder.await_approval(
            execution.run,
            key,
            node,
            message,
            timeout_s=node.timeout_s or self._approval_timeout_s,
        )
        return PAUSED

    async def _branch(
        self, execution: _Execution, node: BranchNode, scope: _Scope, key: str
    ) -> Any:
        save = self._recorder.saver(execution.run, key, node.id, node.type)
        started_at = self._clock()
        try:
            taken = condition(node.condition, scope.context)
        except QuarryError as exc:
            await self._recorder.refused(save, exc, attempt=1, started_at=started_at)
            raise NodeFailed(key, exc.code, exc.message) from exc
        await save(
            status=NodeStatus.RUNNING,
            attempt=1,
            input={"condition": node.condition, "value": taken},
            started_at=started_at,
        )
        chosen, other = (node.then, node.else_) if taken else (node.else_, node.then)
        await self._skip(execution, other, scope)

        def output() -> Any:
            return {"taken": "then" if taken else "else"}

        return await self._container(
            save, started_at, output, self._run_list(execution, chosen, scope)
        )

    async def _parallel(
        self, execution: _Execution, node: ParallelNode, scope: _Scope, key: str
    ) -> Any:
        save = self._recorder.saver(execution.run, key, node.id, node.type)
        started_at = self._clock()
        await save(status=NodeStatus.RUNNING, attempt=1, input=None, started_at=started_at)

        async def branches() -> _Paused | None:
            outcomes = await _settle([self._run_list(execution, b, scope) for b in node.branches])
            return PAUSED if PAUSED in outcomes else None

        def outputs() -> list[Any]:
            return [scope.outputs[branch[-1].id]["output"] for branch in node.branches]

        return await self._container(save, started_at, outputs, branches())

    async def _map(self, execution: _Execution, node: MapNode, scope: _Scope, key: str) -> Any:
        save = self._recorder.saver(execution.run, key, node.id, node.type)
        started_at = self._clock()
        try:
            items = map_items(node, scope.context, self._max_map_items)
        except QuarryError as exc:
            await self._recorder.refused(save, exc, attempt=1, started_at=started_at)
            raise NodeFailed(key, exc.code, exc.message) from exc
        await save(
            status=NodeStatus.RUNNING, attempt=1, input={"items": items}, started_at=started_at
        )
        gate = asyncio.Semaphore(node.max_concurrency)
        last = node.nodes[-1].id
        iterations = [
            _Scope(
                f"{scope.prefix}{node.id}[{index}].",
                {
                    "input": scope.context["input"],
                    "nodes": dict(scope.outputs),
                    "item": item,
                    "index": index,
                },
            )
            for index, item in enumerate(items)
        ]

        async def one(iteration: _Scope) -> _Paused | None:
            async with gate:
                return await self._run_list(execution, node.nodes, iteration)

        async def body() -> _Paused | None:
            outcomes = await _settle([one(iteration) for iteration in iterations])
            return PAUSED if PAUSED in outcomes else None

        def outputs() -> list[Any]:
            return [iteration.outputs[last]["output"] for iteration in iterations]

        return await self._container(save, started_at, outputs, body())

    async def _container(
        self,
        save: Saver,
        started_at: datetime,
        output: Callable[[], Any],
        body: Awaitable[_Paused | None],
    ) -> Any:
        """Runs a container's nested lists and records the container's outcome."""
        try:
            outcome = await body
        except NodeFailed as failure:
            await save(
                status=NodeStatus.FAILED,
                error_code="nested_node_failed",
                error_message=f"{failure.key}: {failure.message}"[:4000],
                finished_at=self._clock(),
            )
            raise
        if outcome is PAUSED:
            return PAUSED
        value = output()
        finished_at = self._clock()
        await save(
            status=NodeStatus.SUCCEEDED,
            output=value,
            finished_at=finished_at,
            duration_ms=(finished_at - started_at).total_seconds() * 1000,
        )
        return value

    async def _skip(self, execution: _Execution, nodes: Sequence[Node], scope: _Scope) -> None:
        """Marks a list that will not run (the branch not taken) ``skipped``, nested lists
        too, except map bodies (their nodes exist per item only)."""
        for node in nodes:
            now = self._clock()
            await self._recorder.saver(execution.run, scope.prefix + node.id, node.id, node.type)(
                status=NodeStatus.SKIPPED, attempt=0, output=None, started_at=now, finished_at=now
            )
            scope.record(node.id, NodeStatus.SKIPPED, None)
            if not isinstance(node, MapNode):
                for _, children in node.scopes():
                    await self._skip(execution, children, scope)


Saver = Callable[..., Awaitable[None]]


def map_items(node: MapNode, context: Mapping[str, Any], max_items: int) -> list[Any]:
    """The list a map node runs its body over; ``InvalidInput`` when it is none or too long."""
    items = resolve(node.items, context, keep_secret_templates=False)
    if not isinstance(items, list):
        raise InvalidInput(
            f"items is {type(items).__name__}, not a list", code="map_items_not_a_list"
        )
    if len(items) > max_items:
        raise InvalidInput(
            f"{len(items)} items; a map runs at most {max_items}", code="map_too_many_items"
        )
    return items


@dataclass(frozen=True)
class AttemptFailed:
    code: str
    message: str
    callers_fault: bool  # a caller's (4xx) error: retried only when the policy lists its code


class RunRecorder:
    """What the local engine and the Step Functions tasks (``shared.workflows.task``) do alike:
    run one attempt of a step (under its timeout, its failure classified), record node rows and
    the run's end, and count them in the metrics."""

    def __init__(
        self,
        repository: WorkflowRepository,
        executor: NodeExecutor,
        metrics: MetricsSink,
        *,
        default_timeout_s: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._repository = repository
        self._executor = executor
        self._metrics = metrics
        self._default_timeout_s = default_timeout_s
        self._clock = clock

    def saver(self, run: WorkflowRun, key: str, node_id: str, node_type: str) -> Saver:
        """Writes the node row ``key`` of ``run`` with the values it is given."""

        async def save(**values: Any) -> None:
            await self._repository.save_node(
                run.tenant_id, run.id, key, node_id=node_id, node_type=node_type, **values
            )

        return save

    async def attempt(
        self, step: Step, config: dict[str, Any], call: NodeCall, *, save: Saver | None
    ) -> NodeResult | AttemptFailed:
        """One attempt; its end (succeeded or failed) is saved and counted."""
        timeout_s = step.timeout_s or self._default_timeout_s
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                result = await self._executor.run(step, config, call)
        except TimeoutError:
            failed = AttemptFailed(NODE_TIMEOUT, f"no result within {timeout_s:g}s", False)
        except QuarryError as exc:
            failed = AttemptFailed(exc.code, exc.message, exc.status_code < 500)
        except Exception as exc:  # a bug or an unexpected library error: worth a retry
            log.exception("workflow step %s raised", call.node_key)
            failed = AttemptFailed("node_error", f"{type(exc).__name__}: {exc}", False)
        else:
            duration_ms = (time.perf_counter() - started) * 1000
            if save is not None:
                await save(
                    status=NodeStatus.SUCCEEDED,
                    output=result.output,
                    tools=list(result.tools),
                    finished_at=self._clock(),
                    duration_ms=duration_ms,
                )
            self._count_node(step.type, NodeStatus.SUCCEEDED, duration_ms, result.tools)
            return result
        duration_ms = (time.perf_counter() - started) * 1000
        if save is not None:
            await save(
                status=NodeStatus.FAILED,
                error_code=failed.code,
                error_message=failed.message[:4000],
                finished_at=self._clock(),
                duration_ms=duration_ms,
            )
        self._count_node(step.type, NodeStatus.FAILED, duration_ms, ())
        return failed

    async def finish(
        self,
        run: WorkflowRun,
        status: RunStatus,
        *,
        from_statuses: Sequence[RunStatus],
        context: dict[str, Any],
        output: Any = None,
        error_code: str | None = None,
        error_message: str | None = None,
        failed_node: str | None = None,
    ) -> bool:
        """Moves the run from one of ``from_statuses`` to its end; False if it was in none."""
        finished = self._clock()
        duration_ms = max((finished - as_utc(run.created_at)).total_seconds() * 1000, 0.0)
        changed = await self._repository.transition_run(
            run.tenant_id,
            run.id,
            from_statuses=list(from_statuses),
            to_status=status,
            output=output,
            context=context,
            error_code=error_code,
            error_message=error_message,
            failed_node=failed_node,
            finished_at=finished,
            duration_ms=duration_ms,
        )
        if changed:
            self._metrics.increment("workflow_runs", workflow=run.workflow_name, status=status)
            self._metrics.observe_ms(
                "workflow_run_duration", duration_ms, workflow=run.workflow_name
            )
        return changed

    async def refused(
        self, save: Saver, error: QuarryError, *, attempt: int, started_at: datetime
    ) -> None:
        """Records a node that failed before it ran: its input, condition or items did not
        resolve."""
        await save(
            status=NodeStatus.FAILED,
            attempt=attempt,
            started_at=started_at,
            finished_at=self._clock(),
            error_code=error.code,
            error_message=error.message,
        )

    async def await_approval(
        self,
        run: WorkflowRun,
        key: str,
        node: ApprovalNode,
        message: Any,
        *,
        timeout_s: float,
        task_token: str | None = None,
    ) -> None:
        """Records the approval ``key`` as waiting for a decision until ``timeout_s`` from now
        (on Step Functions, with the task token its decision is sent with)."""
        now = self._clock()
        await self.saver(run, key, node.id, node.type)(
            status=NodeStatus.WAITING_APPROVAL,
            attempt=1,
            input={"message": message},
            output=None,
            error_code=None,
            error_message=None,
            started_at=now,
            finished_at=None,
            duration_ms=None,
            expires_at=now + timedelta(seconds=timeout_s),
            decided_by=None,
            decision=None,
            task_token=task_token,
        )

    def _count_node(
        self, node_type: str, status: str, duration_ms: float, tools: Sequence[str]
    ) -> None:
        self._metrics.increment("workflow_node_runs", type=node_type, status=status)
        self._metrics.observe_ms("workflow_node_duration", duration_ms, type=node_type)
        for tool in tools:
            self._metrics.increment("workflow_tool_calls", tool=tool)


async def _settle(coroutines: Sequence[Awaitable[_Paused | None]]) -> list[_Paused | None]:
    """Awaits all of them (a failure does not stop the others); then raises the first failure
    in the given order, else returns their outcomes."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks)
    finally:
        for task in tasks:
            task.cancel()
    for task in tasks:
        error = task.exception()
        if error is not None:
            raise error
    return [task.result() for task in tasks]


def _restore(execution: _Execution, node: Node, scope: _Scope) -> None:
    """Puts a node that succeeded earlier back into the context, with the nodes of its nested
    lists (not map bodies: their nodes are per item)."""
    prior = execution.restored.get(scope.prefix + node.id)
    if prior is None:
        return
    scope.record(node.id, prior.status, prior.output)
    if not isinstance(node, MapNode):
        for _, children in node.scopes():
            for child in children:
                _restore(execution, child, scope)


def _compensation(node: Node) -> Step | None:
    return node.compensation if isinstance(node, LEAF_TYPES) else None


def context_at(
    key: str, rows: Sequence[WorkflowNodeRun], run_input: dict[str, Any]
) -> dict[str, Any]:
    """The context the node run ``key`` saw, rebuilt from the persisted node runs: the run
    input, the outputs of the nodes of its lists and, inside a map body, its item and index."""

    def outputs(prefix: str) -> dict[str, Any]:
        return {
            row.node_id: {"status": row.status, "output": row.output}
            for row in rows
            if row.node_key.startswith(prefix) and "[" not in row.node_key[len(prefix) :]
        }

    by_key: Mapping[str, WorkflowNodeRun] = {row.node_key: row for row in rows}
    context: dict[str, Any] = {"input": run_input, "nodes": outputs("")}
    prefix = ""
    for segment in key.split(".")[:-1]:
        match = _MAP_SEGMENT.match(segment)
        if match is None:
            break
        map_run = by_key.get(prefix + match.group("id"))
        items = (map_run.input or {}).get("items", []) if map_run is not None else []
        index = int(match.group("index"))
        prefix = f"{prefix}{segment}."
        context = {
            "input": run_input,
            "nodes": {**context["nodes"], **outputs(prefix)},
            "item": items[index] if index < len(items) else None,
            "index": index,
        }
    return context


def acting_principal(run: WorkflowRun) -> Principal | None:
    """The principal the run acts for (recorded when it started)."""
    return principal_from_context(run.acting_as) if run.acting_as else None
