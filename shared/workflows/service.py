"""Workflow use cases, for the HTTP routes and the CLI: definitions (versioned per tenant), runs
(start, read, list, approve or reject, cancel, resume) and usage figures.

Every method takes the acting ``Principal``, checks its permission (``workflows:read``,
``workflows:run`` or ``workflows:manage``) and works in its tenant only. Runs execute in this
process (``WorkflowEngine``) as asyncio tasks; a caller may wait for a run up to a bound.

An approval that passed its ``expires_at`` is rejected the next time its run is read or decided
(``approval_expired``); no timer has to survive a restart for that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth.audit import AuditEvent, AuditSink
from shared.auth.authenticator import principal_context
from shared.auth.rbac import Permission, Principal, require
from shared.db.models import Workflow, WorkflowNodeRun, WorkflowRun, as_utc
from shared.db.workflow_repository import WorkflowRepository
from shared.errors import Conflict, InvalidInput, PayloadTooLarge
from shared.workflows.definition import (
    ValidationRules,
    WorkflowDefinition,
    check_definition,
    parse_definition,
)
from shared.workflows.engine import (
    APPROVAL_EXPIRED,
    APPROVAL_REJECTED,
    RESUMABLE_RUN_STATUSES,
    NodeFailed,
    NodeStatus,
    RunStatus,
    WorkflowEngine,
)
from shared.workflows.stats import workflow_stats

log = logging.getLogger(__name__)

ACTIVE = (RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)


@dataclass(frozen=True)
class RunDetails:
    run: WorkflowRun
    nodes: Sequence[WorkflowNodeRun]


class WorkflowService:
    def __init__(
        self,
        repository: WorkflowRepository,
        engine: WorkflowEngine,
        audit: AuditSink,
        rules: ValidationRules,
        *,
        max_input_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self._engine = engine
        self._audit = audit
        self._rules = rules
        self._max_input_bytes = max_input_bytes
        self._clock = clock
        self._tasks: dict[uuid.UUID, asyncio.Task[Any]] = {}

    # --- definitions ---------------------------------------------------------------------
    def validate(self, source: str | bytes | Mapping[str, Any]) -> WorkflowDefinition:
        """A definition checked against this deployment (limits, LLM, registered tools)."""
        return parse_definition(source, self._rules)

    async def create(self, actor: Principal, source: str | bytes | Mapping[str, Any]) -> Workflow:
        require(actor, Permission.WORKFLOWS_MANAGE)
        definition = self.validate(source)
        workflow = await self._store(actor, definition, new=True)
        await self._record(actor, "workflow.create", workflow)
        return workflow

    async def update(
        self, actor: Principal, name: str, source: str | bytes | Mapping[str, Any]
    ) -> Workflow:
        """Stores the definition as the next version of ``name``."""
        require(actor, Permission.WORKFLOWS_MANAGE)
        definition = self.validate(source)
        if definition.name != name:
            raise InvalidInput(
                f"the definition is named {definition.name!r}, not {name!r}",
                code="workflow_name_mismatch",
            )
        workflow = await self._store(actor, definition, new=False)
        await self._record(actor, "workflow.update", workflow)
        return workflow

    async def ensure_version(
        self, actor: Principal, source: str | bytes | Mapping[str, Any]
    ) -> Workflow:
        """The stored version equal to this definition: the latest if it is the same, else a new
        version (version 1 of a new workflow)."""
        require(actor, Permission.WORKFLOWS_MANAGE)
        definition = self.validate(source)
        existing = await self.repository.list_workflows(actor.tenant_id)
        latest = next((w for w in existing if w.name == definition.name), None)
        if latest is not None:
            document = {**definition.to_document(), "version": latest.version}
            if document == latest.definition:
                return latest
        workflow = await self._store(actor, definition, new=latest is None)
        await self._record(
            actor, "workflow.create" if latest is None else "workflow.update", workflow
        )
        return workflow

    async def get(self, actor: Principal, name: str, version: int | None = None) -> Workflow:
        require(actor, Permission.WORKFLOWS_READ)
        return await self.repository.get_workflow(actor.tenant_id, name, version)

    async def list_workflows(self, actor: Principal) -> Sequence[Workflow]:
        require(actor, Permission.WORKFLOWS_READ)
        return await self.repository.list_workflows(actor.tenant_id)

    async def delete(self, actor: Principal, name: str) -> None:
        require(actor, Permission.WORKFLOWS_MANAGE)
        await self.repository.delete_workflow(actor.tenant_id, name)
        await self._audit.record_audit(
            AuditEvent(
                "workflow.delete", "success", actor.tenant_id, actor.subject, f"workflow:{name}"
            )
        )

    async def _store(
        self, actor: Principal, definition: WorkflowDefinition, *, new: bool
    ) -> Workflow:
        return await self.repository.add_version(
            actor.tenant_id,
            definition.name,
            definition.to_document(),
            description=definition.description,
            created_by=actor.subject,
            new=new,
        )

    # --- runs ----------------------------------------------------------------------------
    async def start_run(
        self,
        actor: Principal,
        name: str,
        run_input: Any,
        *,
        version: int | None = None,
        wait_s: float | None = 0.0,
    ) -> WorkflowRun:
        """Starts a run of ``name`` (its latest version by default). ``wait_s``: how long to wait
        for it to finish or pause (0: not at all; None: as long as it takes)."""
        require(actor, Permission.WORKFLOWS_RUN)
        size = len(json.dumps(run_input, default=str).encode())
        if size > self._max_input_bytes:
            raise PayloadTooLarge(
                f"the run input has {size} bytes; at most {self._max_input_bytes}",
                code="input_too_large",
            )
        workflow = await self.repository.get_workflow(actor.tenant_id, name, version)
        definition = self._runnable(workflow)
        checked_input = definition.validate_input(run_input)
        run = await self.repository.create_run(
            actor.tenant_id,
            workflow,
            checked_input,
            started_by=actor.subject,
            acting_as=principal_context(actor),
        )
        await self._record_run(actor, "workflow_run.start", run)
        return await self._launch(run, self._engine.execute(run, definition), wait_s)

    async def get_run(self, actor: Principal, run_id: uuid.UUID) -> RunDetails:
        require(actor, Permission.WORKFLOWS_READ)
        run = await self.repository.get_run(actor.tenant_id, run_id)
        if await self._expire(run):
            run = await self.repository.get_run(actor.tenant_id, run_id)
        return RunDetails(run, await self.repository.node_runs(actor.tenant_id, run_id))

    async def list_runs(
        self,
        actor: Principal,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Sequence[WorkflowRun]:
        require(actor, Permission.WORKFLOWS_READ)
        if workflow is not None:
            await self.repository.get_workflow(actor.tenant_id, workflow)
        if status is not None and status not in set(RunStatus):
            raise InvalidInput(
                f"unknown run status {status!r}; one of {', '.join(RunStatus)}",
                code="invalid_status",
            )

        async def page() -> Sequence[WorkflowRun]:
            return await self.repository.list_runs(
                actor.tenant_id, workflow_name=workflow, status=status, limit=limit, offset=offset
            )

        runs = await page()
        expired = [await self._expire(run) for run in runs]
        return await page() if any(expired) else runs

    async def approve(
        self,
        actor: Principal,
        run_id: uuid.UUID,
        *,
        node: str | None = None,
        comment: str | None = None,
        wait_s: float | None = 0.0,
    ) -> WorkflowRun:
        """Approves the waiting approval (``node``: its key, needed when several wait) and
        continues the run."""
        return await self._decide(actor, run_id, True, node, comment, wait_s)

    async def reject(
        self,
        actor: Principal,
        run_id: uuid.UUID,
        *,
        node: str | None = None,
        comment: str | None = None,
        wait_s: float | None = 0.0,
    ) -> WorkflowRun:
        """Rejects the waiting approval: the run fails there (and compensates)."""
        return await self._decide(actor, run_id, False, node, comment, wait_s)

    async def cancel(self, actor: Principal, run_id: uuid.UUID) -> WorkflowRun:
        require(actor, Permission.WORKFLOWS_RUN)
        run = await self.repository.get_run(actor.tenant_id, run_id)
        now = self._clock()
        cancelled = await self.repository.transition_run(
            actor.tenant_id,
            run_id,
            from_statuses=ACTIVE,
            to_status=RunStatus.CANCELLED,
            error_code="cancelled",
            error_message=f"cancelled by {actor.subject}",
            finished_at=now,
            duration_ms=_ms_between(run.created_at, now),
        )
        if not cancelled:
            raise Conflict(
                f"run {run_id} is {run.status}; only running or waiting runs can be cancelled",
                code="run_not_active",
            )
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        await self.repository.cancel_open_nodes(actor.tenant_id, run_id, now)
        await self._record_run(actor, "workflow_run.cancel", run)
        return await self.repository.get_run(actor.tenant_id, run_id)

    async def resume(
        self, actor: Principal, run_id: uuid.UUID, *, wait_s: float | None = 0.0
    ) -> WorkflowRun:
        """Runs a failed or compensated run again from its failed node; nodes that succeeded
        (and were not compensated) are not run again."""
        require(actor, Permission.WORKFLOWS_RUN)
        run = await self.repository.get_run(actor.tenant_id, run_id)
        workflow = await self.repository.get_workflow_by_id(actor.tenant_id, run.workflow_id)
        definition = self._runnable(workflow)
        resumed = await self.repository.transition_run(
            actor.tenant_id,
            run_id,
            from_statuses=RESUMABLE_RUN_STATUSES,
            to_status=RunStatus.RUNNING,
            output=None,
            error_code=None,
            error_message=None,
            failed_node=None,
            finished_at=None,
            duration_ms=None,
        )
        if not resumed:
            raise Conflict(
                f"run {run_id} is {run.status}; only failed or compensated runs resume",
                code="run_not_resumable",
            )
        await self._record_run(actor, "workflow_run.resume", run)
        return await self._launch(run, self._engine.execute(run, definition), wait_s)

    async def stats(self, actor: Principal, *, window_hours: int) -> dict[str, Any]:
        require(actor, Permission.WORKFLOWS_READ)
        since = self._clock() - timedelta(hours=window_hours)
        runs = await self.repository.run_samples(actor.tenant_id, since)
        tools = await self.repository.tool_calls(actor.tenant_id, since)
        return {"window_hours": window_hours, **workflow_stats(runs, tools)}

    async def aclose(self) -> None:
        """Stops the runs this process is executing (they stay ``running`` in the database)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # --- internals -----------------------------------------------------------------------
    def _runnable(self, workflow: Workflow) -> WorkflowDefinition:
        """The stored definition, checked against what this deployment offers now (an agent
        cannot run once the LLM is gone)."""
        definition = WorkflowDefinition.model_validate(workflow.definition)
        check_definition(definition, self._rules)
        return definition

    async def _decide(
        self,
        actor: Principal,
        run_id: uuid.UUID,
        approved: bool,
        node: str | None,
        comment: str | None,
        wait_s: float | None,
    ) -> WorkflowRun:
        require(actor, Permission.WORKFLOWS_RUN)
        run = await self.repository.get_run(actor.tenant_id, run_id)
        if await self._expire(run):
            raise Conflict("the approval timed out and was rejected", code=APPROVAL_EXPIRED)
        if run.status != RunStatus.WAITING_APPROVAL:
            raise Conflict(f"run {run_id} is {run.status}, not waiting", code="run_not_waiting")
        waiting = await self._waiting(run)
        if node is None and len(waiting) > 1:
            raise InvalidInput(
                f"{len(waiting)} approvals wait; name one of "
                f"{', '.join(r.node_key for r in waiting)}",
                code="approval_node_required",
            )
        row = next((r for r in waiting if node in (None, r.node_key)), None)
        if row is None:
            raise Conflict(f"no approval {node!r} waits in run {run_id}", code="run_not_waiting")
        workflow = await self.repository.get_workflow_by_id(actor.tenant_id, run.workflow_id)
        definition = (
            self._runnable(workflow)
            if approved
            else WorkflowDefinition.model_validate(workflow.definition)
        )
        if not await self.repository.transition_run(
            actor.tenant_id,
            run_id,
            from_statuses=[RunStatus.WAITING_APPROVAL],
            to_status=RunStatus.RUNNING,
        ):
            raise Conflict(f"run {run_id} changed meanwhile", code="run_not_waiting")
        now = self._clock()
        decision = {"approved": approved, "decided_by": actor.subject, "comment": comment}
        common: dict[str, Any] = {
            "output": decision,
            "decided_by": actor.subject,
            "decision": "approved" if approved else "rejected",
            "finished_at": now,
            "duration_ms": _ms_between(row.started_at or now, now),
        }
        work: Awaitable[Any]
        if approved:
            await self.repository.transition_node(
                actor.tenant_id,
                run_id,
                row.node_key,
                from_status=NodeStatus.WAITING_APPROVAL,
                to_status=NodeStatus.SUCCEEDED,
                **common,
            )
            work = self._engine.execute(run, definition)
        else:
            message = f"rejected by {actor.subject}" + (f": {comment}" if comment else "")
            await self.repository.transition_node(
                actor.tenant_id,
                run_id,
                row.node_key,
                from_status=NodeStatus.WAITING_APPROVAL,
                to_status=NodeStatus.FAILED,
                error_code=APPROVAL_REJECTED,
                error_message=message,
                **common,
            )
            work = self._engine.fail(
                run, definition, NodeFailed(row.node_key, APPROVAL_REJECTED, message)
            )
        action = "workflow_run.approve" if approved else "workflow_run.reject"
        await self._record_run(actor, action, run, node=row.node_key, comment=comment)
        return await self._launch(run, work, wait_s)

    async def _waiting(self, run: WorkflowRun) -> list[WorkflowNodeRun]:
        rows = await self.repository.node_runs(run.tenant_id, run.id)
        return [r for r in rows if r.status == NodeStatus.WAITING_APPROVAL]

    async def _expire(self, run: WorkflowRun) -> bool:
        """Rejects the run's approvals whose time is up (the run then fails there); whether it
        did."""
        if run.status != RunStatus.WAITING_APPROVAL:
            return False
        now = self._clock()
        due = [
            r
            for r in await self._waiting(run)
            if r.expires_at is not None and as_utc(r.expires_at) <= now
        ]
        if not due or not await self.repository.transition_run(
            run.tenant_id,
            run.id,
            from_statuses=[RunStatus.WAITING_APPROVAL],
            to_status=RunStatus.RUNNING,
        ):
            return False
        for row in due:
            await self.repository.transition_node(
                run.tenant_id,
                run.id,
                row.node_key,
                from_status=NodeStatus.WAITING_APPROVAL,
                to_status=NodeStatus.FAILED,
                decision="expired",
                error_code=APPROVAL_EXPIRED,
                error_message="no decision before the approval timed out",
                finished_at=now,
            )
        workflow = await self.repository.get_workflow_by_id(run.tenant_id, run.workflow_id)
        definition = WorkflowDefinition.model_validate(workflow.definition)
        failure = NodeFailed(
            due[0].node_key, APPROVAL_EXPIRED, "no decision before the approval timed out"
        )
        await self._engine.fail(run, definition, failure)
        await self._audit.record_audit(
            AuditEvent(
                "workflow_run.expire",
                "success",
                run.tenant_id,
                None,
                f"workflow_run:{run.id}",
                {"workflow": run.workflow_name, "node": due[0].node_key},
            )
        )
        return True

    async def _launch(
        self, run: WorkflowRun, work: Awaitable[Any], wait_s: float | None
    ) -> WorkflowRun:
        """Runs ``work`` on the run as a task of this process; waits up to ``wait_s``."""
        task = asyncio.ensure_future(work)
        self._tasks[run.id] = task

        def done(finished: asyncio.Task[Any]) -> None:
            if self._tasks.get(run.id) is finished:
                del self._tasks[run.id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "workflow run %s stopped on an error",
                    run.id,
                    exc_info=finished.exception(),
                )

        task.add_done_callback(done)
        if wait_s is None or wait_s > 0:
            await asyncio.wait([task], timeout=wait_s)
        return await self.repository.get_run(run.tenant_id, run.id)

    async def _record(self, actor: Principal, action: str, workflow: Workflow) -> None:
        await self._audit.record_audit(
            AuditEvent(
                action,
                "success",
                actor.tenant_id,
                actor.subject,
                f"workflow:{workflow.name}",
                {"version": workflow.version},
            )
        )

    async def _record_run(
        self, actor: Principal, action: str, run: WorkflowRun, **details: Any
    ) -> None:
        await self._audit.record_audit(
            AuditEvent(
                action,
                "success",
                actor.tenant_id,
                actor.subject,
                f"workflow_run:{run.id}",
                {"workflow": run.workflow_name, "version": run.workflow_version, **details},
            )
        )


def _ms_between(start: datetime, end: datetime) -> float:
    return max((as_utc(end) - as_utc(start)).total_seconds() * 1000, 0.0)
