"""One task of a workflow run on Step Functions: the state machine (``shared.workflows.asl``)
carries the run context and does the retries and the control flow; the workflows step function
runs one task and records it, with the same node executors, node keys, statuses and metrics as
the local engine (``shared.workflows.engine``), so a run reads the same wherever it ran.

A task event is what the compiled machine sends::

    {"kind": "workflow_node", "run_id", "tenant_id", "node": "<id>", "key_prefix": "",
     "attempt": 0, "context": {...}}                 # + "task_token" for an approval
    {"kind": "workflow_node", "run_id", "tenant_id", "node": "<id>", "compensate": true}
    {"kind": "workflow_end", "run_id", "tenant_id", "outcome": "succeeded", "context": {...}}
    {"kind": "workflow_end", ..., "outcome": "failed", "error": {"Error", "Cause"}}

What a ``workflow_node`` task does depends on the node: a leaf runs (one attempt, under its
timeout; not again once it succeeded, as on a resume in the engine) and answers ``{"status",
"output"}``; a ``branch`` evaluates its condition, records the list not taken as ``skipped`` and
answers the new context; a ``map`` resolves its items and answers ``{"items"}``; an ``approval``
records that it waits, with its task token, and pauses the run (``waiting_approval``); with
``compensate`` the node's compensation runs for every key of the node that completed (the items
of a map body too), last completed first. ``workflow_end`` records the run's end: ``succeeded``
with its output, or ``compensated``/``failed`` as the engine decides it, with the failed node,
its code and message (read from the caught error; when that names no node, as for a timed-out
task or a rejection sent without a cause, from the recorded nodes).

A task that fails raises ``WorkflowTaskError`` named as ``shared.workflows.asl.error_name`` says,
so that the machine's retriers see the error code. Differences from the engine, all of the
machine's shape: a ``branch`` row is ``succeeded`` once its condition is evaluated; ``parallel``
and ``map`` rows are completed by ``workflow_end`` (inside a map body a nested ``map`` row stays
``running``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.db.models import WorkflowNodeRun, WorkflowRun, as_utc
from shared.db.workflow_repository import WorkflowRepository
from shared.errors import Conflict, InvalidInput, QuarryError
from shared.observability.metrics import MetricsSink
from shared.sagas.task import caught_error
from shared.workflows.asl import (
    CALLER_ERROR,
    END_TASK,
    NODE_TASK,
    NODE_TIMEOUT,
    STATES_TIMEOUT,
    error_name,
)
from shared.workflows.definition import (
    LEAF_TYPES,
    ApprovalNode,
    BranchNode,
    LeafNode,
    MapNode,
    Node,
    WorkflowDefinition,
    WorkflowGraph,
)
from shared.workflows.engine import (
    APPROVAL_EXPIRED,
    APPROVAL_REJECTED,
    AttemptFailed,
    NodeStatus,
    RunRecorder,
    RunStatus,
    Saver,
    acting_principal,
    context_at,
    map_items,
)
from shared.workflows.expressions import condition, resolve
from shared.workflows.nodes import NodeCall, NodeExecutor, NodeResult, Step

log = logging.getLogger(__name__)

ACTIVE_RUN_STATUSES = (RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)
BAD_TASK = "bad_task"
NESTED_NODE_FAILED = "nested_node_failed"
_CACHED_DEFINITIONS = 256


class WorkflowTaskError(Exception):
    """A failed task. Lambda reports the class name as the error type, which is the error name
    Step Functions matches: each name gets its own subclass (``task_error``). The message is
    JSON ``{"node", "code", "message"}``, which ``workflow_end`` reads back."""

    def __init__(self, node_key: str | None, code: str, message: str) -> None:
        super().__init__(json.dumps({"node": node_key, "code": code, "message": message}))
        self.node_key = node_key
        self.code = code
        self.message = message


_ERROR_TYPES: dict[str, type[WorkflowTaskError]] = {}


def task_error(name: str, node_key: str | None, code: str, message: str) -> WorkflowTaskError:
    """A ``WorkflowTaskError`` whose class (error type) is named ``name``."""
    error_type = _ERROR_TYPES.get(name)
    if error_type is None:
        error_type = type(name, (WorkflowTaskError,), {"__module__": __name__})
        _ERROR_TYPES[name] = error_type
    return error_type(node_key, code, message)


class WorkflowTask(BaseModel):
    """A task event (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["workflow_node", "workflow_end"]
    run_id: uuid.UUID
    tenant_id: uuid.UUID
    node: str | None = None
    key_prefix: str = Field(default="", max_length=200)
    attempt: int = Field(default=0, ge=0)
    context: dict[str, Any] = Field(default_factory=dict)
    compensate: bool = False
    task_token: str | None = Field(default=None, min_length=1, max_length=1024)
    outcome: Literal["succeeded", "failed"] | None = None
    error: dict[str, Any] | None = None

    @property
    def node_key(self) -> str | None:
        return None if self.node is None else self.key_prefix + self.node


class Failure(BaseModel):
    """Why a run failed, as the machine caught it: the node key (when known), code, message."""

    node_key: str | None
    code: str
    message: str


def failure_of(error: Mapping[str, Any]) -> Failure:
    """Reads a caught error (``{"Error", "Cause"}``): a ``WorkflowTaskError`` of the step
    function, a failure sent with a task token (a rejected approval, ``Cause`` in the same JSON),
    or an error of Step Functions itself (``States.Timeout``, ...)."""
    caught = caught_error(error)
    report = caught.report
    if report is not None and "code" in report:
        node = report.get("node")
        return Failure(
            node_key=node if isinstance(node, str) else None,
            code=str(report["code"]),
            message=str(report.get("message") or ""),
        )
    message = report.get("message") if report is not None else caught.message
    return Failure(node_key=None, code=caught.name, message=str(message or caught.name))


class WorkflowTasks:
    """Runs the tasks of workflow runs on Step Functions (built by the container)."""

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
    ) -> None:
        self._repository = repository
        self._metrics = metrics
        self._recorder = RunRecorder(
            repository, executor, metrics, default_timeout_s=default_timeout_s, clock=clock
        )
        self._approval_timeout_s = default_approval_timeout_s
        self._max_map_items = max_map_items
        self._clock = clock
        self._definitions: dict[uuid.UUID, WorkflowDefinition] = {}

    async def run(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Runs one task event; what the machine merges into its state. Raises
        ``WorkflowTaskError`` only."""
        try:
            task = WorkflowTask.model_validate(event)
        except ValidationError as exc:
            raise task_error(CALLER_ERROR, None, BAD_TASK, f"not a workflow task: {exc}") from exc
        try:
            run = await self._repository.get_run(task.tenant_id, task.run_id)
            definition = await self._definition(run)
            if task.kind == END_TASK:
                if task.outcome == "succeeded":
                    return await self._succeed(task, run, definition)
                return await self._fail(task, run, definition)
            return await self._node_task(task, run, definition.graph)
        except WorkflowTaskError:
            raise
        except QuarryError as exc:
            name = error_name(exc.code, callers_fault=exc.status_code < 500, policy=None)
            raise task_error(name, task.node_key, exc.code, exc.message) from exc

    async def _definition(self, run: WorkflowRun) -> WorkflowDefinition:
        """The run's workflow version (versions never change: cached)."""
        definition = self._definitions.get(run.workflow_id)
        if definition is None:
            workflow = await self._repository.get_workflow_by_id(run.tenant_id, run.workflow_id)
            definition = WorkflowDefinition.model_validate(workflow.definition)
            if len(self._definitions) >= _CACHED_DEFINITIONS:
                self._definitions.clear()
            self._definitions[run.workflow_id] = definition
        return definition

    async def _node_task(
        self, task: WorkflowTask, run: WorkflowRun, graph: WorkflowGraph
    ) -> dict[str, Any]:
        if task.kind != NODE_TASK or task.node is None or task.node not in graph.node_ids():
            raise InvalidInput(f"no node {task.node!r} in this workflow", code=BAD_TASK)
        node = graph.node(task.node)
        if task.compensate:
            step = _compensation(node)
            if step is None:
                raise InvalidInput(f"node {node.id!r} has no compensation", code=BAD_TASK)
            return await self._compensate(run, node, step)
        if run.status not in ACTIVE_RUN_STATUSES:
            raise Conflict(f"run {run.id} is {run.status}", code="run_not_active")
        if isinstance(node, LEAF_TYPES):
            return await self._leaf(task, run, node)
        if isinstance(node, ApprovalNode):
            return await self._approval(task, run, node)
        if isinstance(node, BranchNode):
            return await self._branch(task, run, node)
        if isinstance(node, MapNode):
            return await self._map_items(task, run, node)
        raise InvalidInput(f"a {node.type} node has no task of its own", code=BAD_TASK)

    # --- node tasks ----------------------------------------------------------------------
    async def _leaf(self, task: WorkflowTask, run: WorkflowRun, node: LeafNode) -> dict[str, Any]:
        key = task.key_prefix + node.id
        prior = await self._repository.node_run(run.tenant_id, run.id, key)
        if prior is not None and prior.status == NodeStatus.SUCCEEDED:
            # Invoked again after it succeeded (a retried invocation, a resumed run): as the
            # engine, a node that succeeded does not run again.
            return {"status": NodeStatus.SUCCEEDED.value, "output": prior.output}
        save = self._saver(run, key, node)
        attempt = task.attempt + 1
        started_at = self._clock()
        try:
            config = resolve(node.templated(), task.context, keep_secret_templates=True)
        except QuarryError as exc:  # never retried, as in the engine
            await self._recorder.refused(save, exc, attempt=attempt, started_at=started_at)
            raise task_error(CALLER_ERROR, key, exc.code, exc.message) from exc
        await save(
            status=NodeStatus.RUNNING,
            attempt=attempt,
            input=config,
            output=None,
            error_code=None,
            error_message=None,
            started_at=started_at,
            finished_at=None,
            duration_ms=None,
        )
        call = NodeCall(run.tenant_id, run.id, key, task.context, acting_principal(run))
        result = await self._attempt(node, config, call, save=save)
        return {"status": NodeStatus.SUCCEEDED.value, "output": result.output}

    async def _approval(
        self, task: WorkflowTask, run: WorkflowRun, node: ApprovalNode
    ) -> dict[str, Any]:
        if task.task_token is None:
            raise InvalidInput("an approval task needs its task_token", code=BAD_TASK)
        key = task.key_prefix + node.id
        message = resolve(node.message, task.context, keep_secret_templates=False)
        await self._recorder.await_approval(
            run,
            key,
            node,
            message,
            timeout_s=node.timeout_s or self._approval_timeout_s,
            task_token=task.task_token,
        )
        await self._repository.transition_run(
            run.tenant_id,
            run.id,
            from_statuses=[RunStatus.RUNNING],
            to_status=RunStatus.WAITING_APPROVAL,
            context=task.context,
        )
        return {}

    async def _branch(
        self, task: WorkflowTask, run: WorkflowRun, node: BranchNode
    ) -> dict[str, Any]:
        key = task.key_prefix + node.id
        save = self._saver(run, key, node)
        started_at = self._clock()
        try:
            taken = condition(node.condition, task.context)
        except QuarryError as exc:
            await self._recorder.refused(save, exc, attempt=1, started_at=started_at)
            raise
        output = {"taken": "then" if taken else "else"}
        await save(
            status=NodeStatus.SUCCEEDED,
            attempt=1,
            input={"condition": node.condition, "value": taken},
            output=output,
            started_at=started_at,
            finished_at=self._clock(),
        )
        nodes = dict(task.context.get("nodes") or {})
        nodes[node.id] = {"status": NodeStatus.SUCCEEDED.value, "output": output}
        for skipped in _skipped(node.else_ if taken else node.then):
            await self._saver(run, task.key_prefix + skipped.id, skipped)(
                status=NodeStatus.SKIPPED, attempt=0, output=None, finished_at=self._clock()
            )
            nodes[skipped.id] = {"status": NodeStatus.SKIPPED.value, "output": None}
        return {**task.context, "nodes": nodes}

    async def _map_items(
        self, task: WorkflowTask, run: WorkflowRun, node: MapNode
    ) -> dict[str, Any]:
        key = task.key_prefix + node.id
        save = self._saver(run, key, node)
        started_at = self._clock()
        try:
            items = map_items(node, task.context, self._max_map_items)
        except QuarryError as exc:
            await self._recorder.refused(save, exc, attempt=1, started_at=started_at)
            raise
        await save(
            status=NodeStatus.RUNNING, attempt=1, input={"items": items}, started_at=started_at
        )
        return {"items": items}

    async def _compensate(self, run: WorkflowRun, node: Node, step: Step) -> dict[str, Any]:
        """Compensates every completed key of ``node``, last completed first; a failure does not
        stop the others, and the first one is raised at the end (the machine may retry: keys
        whose compensation failed are owed again)."""
        if run.status == RunStatus.CANCELLED:  # a cancelled run keeps its effects
            return {}
        rows = await self._repository.node_runs(run.tenant_id, run.id)
        owed = sorted(
            (
                row
                for row in rows
                if row.node_id == node.id
                and row.status in (NodeStatus.SUCCEEDED, NodeStatus.COMPENSATION_FAILED)
            ),
            key=lambda row: as_utc(row.finished_at or row.started_at or run.created_at),
            reverse=True,
        )
        first_error: WorkflowTaskError | None = None
        for row in owed:
            context = context_at(row.node_key, rows, run.input)
            call = NodeCall(run.tenant_id, run.id, row.node_key, context, acting_principal(run))
            try:
                config = resolve(step.templated(), context, keep_secret_templates=True)
                await self._attempt(step, config, call)
            except QuarryError as exc:
                error = task_error(CALLER_ERROR, row.node_key, exc.code, exc.message)
            except WorkflowTaskError as exc:
                error = exc
            else:
                await self._repository.transition_node(
                    run.tenant_id,
                    run.id,
                    row.node_key,
                    from_status=row.status,
                    to_status=NodeStatus.COMPENSATED,
                    error_code=None,
                    error_message=None,
                )
                self._metrics.increment("workflow_compensations", outcome="succeeded")
                continue
            await self._repository.transition_node(
                run.tenant_id,
                run.id,
                row.node_key,
                from_status=row.status,
                to_status=NodeStatus.COMPENSATION_FAILED,
                error_code=error.code,
                error_message=error.message[:4000],
            )
            self._metrics.increment("workflow_compensations", outcome="failed")
            first_error = first_error or error
        if first_error is not None:
            raise first_error
        return {}

    async def _attempt(
        self,
        step: Step,
        config: dict[str, Any],
        call: NodeCall,
        *,
        save: Saver | None = None,
    ) -> NodeResult:
        """One attempt of a step, as the engine runs it; a failure raises the error whose name
        the state machine's retriers match."""
        outcome = await self._recorder.attempt(step, config, call, save=save)
        if isinstance(outcome, AttemptFailed):
            name = error_name(outcome.code, callers_fault=outcome.callers_fault, policy=step.retry)
            raise task_error(name, call.node_key, outcome.code, outcome.message)
        return outcome

    # --- the run's end -------------------------------------------------------------------
    async def _succeed(
        self, task: WorkflowTask, run: WorkflowRun, definition: WorkflowDefinition
    ) -> dict[str, Any]:
        context = task.context
        nodes: Mapping[str, Any] = context.get("nodes") or {}
        try:
            if definition.output is None:
                output = (nodes.get(definition.nodes[-1].id) or {}).get("output")
            else:
                output = resolve(definition.output, context, keep_secret_templates=False)
        except QuarryError as exc:
            raise task_error(CALLER_ERROR, "output", exc.code, exc.message) from exc
        graph = definition.graph
        now = self._clock()
        for node_id, record in nodes.items():
            if node_id in graph.node_ids() and graph.node(node_id).type in ("parallel", "map"):
                await self._saver(run, node_id, graph.node(node_id))(
                    status=NodeStatus.SUCCEEDED,
                    attempt=1,
                    output=record.get("output"),
                    finished_at=now,
                )
        await self._finish(run, RunStatus.SUCCEEDED, context=context, output=output)
        return {"output": output}

    async def _fail(
        self, task: WorkflowTask, run: WorkflowRun, definition: WorkflowDefinition
    ) -> dict[str, Any]:
        """The engine's ``fail`` after the machine ran the compensations."""
        failure = failure_of(task.error or {})
        rows = await self._repository.node_runs(run.tenant_id, run.id)
        graph = definition.graph
        if failure.node_key is None:
            failure = await self._locate(failure, run, graph, rows)
        now = self._clock()
        for row in rows:
            if row.status == NodeStatus.WAITING_APPROVAL and row.node_key != failure.node_key:
                await self._repository.transition_node(
                    run.tenant_id,
                    run.id,
                    row.node_key,
                    from_status=NodeStatus.WAITING_APPROVAL,
                    to_status=NodeStatus.CANCELLED,
                    finished_at=now,
                )
        for key, container in _containers(graph, failure.node_key):
            await self._saver(run, key, container)(
                status=NodeStatus.FAILED,
                error_code=NESTED_NODE_FAILED,
                error_message=f"{failure.node_key}: {failure.message}"[:4000],
                finished_at=now,
            )
        defines_compensation = any(
            _compensation(graph.node(node_id)) is not None for node_id in graph.node_ids()
        )
        rows = await self._repository.node_runs(run.tenant_id, run.id)
        compensation_failed = any(row.status == NodeStatus.COMPENSATION_FAILED for row in rows)
        status = (
            RunStatus.COMPENSATED
            if defines_compensation and not compensation_failed
            else RunStatus.FAILED
        )
        changed = await self._finish(
            run,
            status,
            context=task.context or run.context,
            error_code=failure.code[:64],
            error_message=f"{failure.node_key or 'run'}: {failure.message}"[:4000],
            failed_node=failure.node_key,
        )
        if not changed:  # the run ended otherwise meanwhile (cancelled)
            status = RunStatus(await self._repository.run_status(run.tenant_id, run.id))
        return {"status": status.value}

    async def _locate(
        self,
        failure: Failure,
        run: WorkflowRun,
        graph: WorkflowGraph,
        rows: Sequence[WorkflowNodeRun],
    ) -> Failure:
        """The node of a failure the machine reported without one: a rejected approval (the
        service marked it), or a task the machine timed out (a waiting approval expired, or a
        node's function never answered)."""
        if failure.code == APPROVAL_REJECTED:
            rejected = [
                row
                for row in rows
                if row.node_type == "approval" and row.error_code == APPROVAL_REJECTED
            ]
            key = rejected[-1].node_key if rejected else None
            return failure.model_copy(update={"node_key": key})
        if failure.code != STATES_TIMEOUT:
            return failure
        waiting = [row for row in rows if row.status == NodeStatus.WAITING_APPROVAL]
        if waiting:
            row = waiting[0]
            message = "no decision before the approval timed out"
            await self._repository.transition_node(
                run.tenant_id,
                run.id,
                row.node_key,
                from_status=NodeStatus.WAITING_APPROVAL,
                to_status=NodeStatus.FAILED,
                decision="expired",
                error_code=APPROVAL_EXPIRED,
                error_message=message,
                finished_at=self._clock(),
            )
            return Failure(node_key=row.node_key, code=APPROVAL_EXPIRED, message=message)
        running = [
            row
            for row in rows
            if row.status == NodeStatus.RUNNING and isinstance(graph.node(row.node_id), LEAF_TYPES)
        ]
        key = running[-1].node_key if running else None
        return Failure(node_key=key, code=NODE_TIMEOUT, message="the task timed out")

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
    ) -> bool:
        return await self._recorder.finish(
            run,
            status,
            from_statuses=ACTIVE_RUN_STATUSES,
            context=context,
            output=output,
            error_code=error_code,
            error_message=error_message,
            failed_node=failed_node,
        )

    def _saver(self, run: WorkflowRun, key: str, node: Node) -> Saver:
        return self._recorder.saver(run, key, node.id, node.type)


def _compensation(node: Node) -> Step | None:
    return node.compensation if isinstance(node, LEAF_TYPES) else None


def _skipped(nodes: Sequence[Node]) -> Iterator[Node]:
    """The nodes a branch not taken records as ``skipped``: its list and nested lists, not map
    bodies (their nodes exist per item only)."""
    for node in nodes:
        yield node
        if not isinstance(node, MapNode):
            for _, children in node.scopes():
                yield from _skipped(children)


def _containers(graph: WorkflowGraph, key: str | None) -> list[tuple[str, Node]]:
    """The keys of the containers around node key ``key``, outermost first."""
    if key is None:
        return []
    segments = key.split(".")
    node_id = segments[-1]
    if node_id not in graph.node_ids():
        return []
    map_segments = iter(segments[:-1])
    prefix = ""
    found: list[tuple[str, Node]] = []
    for container_id, slot in graph.scope_of(node_id):
        container = graph.node(container_id)
        found.append((prefix + container_id, container))
        if slot == "nodes" and isinstance(container, MapNode):
            prefix += next(map_segments, f"{container_id}[0]") + "."
    return found
