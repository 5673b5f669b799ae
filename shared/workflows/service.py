"""Workflow use cases, for the HTTP routes and the CLI: definitions (versioned per tenant), runs
(start, read, list, approve or reject, cancel, resume) and usage figures.

Every method takes the acting ``Principal``, checks its permission (``workflows:read``,
``workflows:run`` or ``workflows:manage``) and works in its tenant only. The service records
what happens to a run; a ``WorkflowLauncher`` (``shared.workflows.launcher``) executes it: the
local engine in this process, or Step Functions. A caller may wait for a run up to a bound. A run
Step Functions did not start is ``failed`` (``workflow_not_started``) and can be resumed.

With runs in this process, an approval that passed its ``expires_at`` is rejected the next time
its run is read or decided (``approval_expired``): no timer has to survive a restart for that;
and runs a stopped process left ``running`` can be marked interrupted at the next start
(``recover_interrupted_runs``). On Step Functions the approval's task times out by itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth.audit import AuditEvent, AuditSink
from shared.auth.authenticator import principal_context
from shared.auth.rbac import Permission, Principal, require
from shared.db.models import Workflow, WorkflowNodeRun, WorkflowRun, as_utc
from shared.db.workflow_repository import WorkflowRepository
from shared.errors import (
    Conflict,
    DependencyUnavailable,
    InvalidInput,
    PayloadTooLarge,
    QuarryError,
)
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
)
from shared.workflows.launcher import WorkflowLauncher
from shared.workflows.stats import workflow_stats

ACTIVE = (RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)
NOT_STARTED = "workflow_not_started"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class RunDetails:
    run: WorkflowRun
    nodes: Sequence[WorkflowNodeRun]


class WorkflowService:
    def __init__(
        self,
        repository: WorkflowRepository,
        launcher: WorkflowLauncher,
        audit: AuditSink,
        rules: ValidationRules,
        *,
        max_input_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self._launcher = launcher
        self._audit = audit
        self._rules = rules
        self._max_input_bytes = max_input_bytes
        self._clock = clock

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
        versions = await self.repository.delete_workflow(actor.tenant_id, name)
        await self._launcher.discard(actor.tenant_id, name, versions)
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
        return await self._execute(run, definition, wait_s)

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
        if run.status not in ACTIVE:
            raise _not_active(run_id, run.status)
        workflow = await self.repository.get_workflow_by_id(actor.tenant_id, run.workflow_id)
        await self._launcher.stop(run, WorkflowDefinition.model_validate(workflow.definition))
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
            raise _not_active(run_id, await self.repository.run_status(actor.tenant_id, run_id))
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
        resumed = await self.repository.restart_run(
            actor.tenant_id, run_id, from_statuses=RESUMABLE_RUN_STATUSES
        )
        if not resumed:
            raise Conflict(
                f"run {run_id} is {run.status}; only failed or compensated runs resume",
                code="run_not_resumable",
            )
        await self._record_run(actor, "workflow_run.resume", run)
        run = await self.repository.get_run(actor.tenant_id, run_id)
        return await self._execute(run, definition, wait_s)

    async def stats(self, actor: Principal, *, window_hours: int) -> dict[str, Any]:
        require(actor, Permission.WORKFLOWS_READ)
        since = self._clock() - timedelta(hours=window_hours)
        runs = await self.repository.run_samples(actor.tenant_id, since)
        tools = await self.repository.tool_calls(actor.tenant_id, since)
        return {"window_hours": window_hours, **workflow_stats(runs, tools)}

    async def recover_interrupted_runs(self) -> int:
        """Runs still ``running`` in the database when runs execute in this process and it just
        started: the process that executed them is gone. They become ``failed``
        (``interrupted``, their running nodes too; no compensation ran) and can be resumed; how
        many. Only right when no other process executes runs on this database."""
        if not self._launcher.runs_in_process:
            return 0
        return await self.repository.fail_interrupted_runs(
            self._clock(),
            code=INTERRUPTED,
            message="the process executing the run stopped; resume the run",
        )

    async def aclose(self) -> None:
        """Stops the runs this process is executing (they stay ``running`` in the database)."""
        await self._launcher.aclose()

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
        if row.expires_at is not None and as_utc(row.expires_at) <= self._clock():
            # Runs not in this process: the machine times the approval out by itself.
            raise Conflict("the approval timed out", code=APPROVAL_EXPIRED)
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
        message = f"rejected by {actor.subject}" + (f": {comment}" if comment else "")
        decided = NodeStatus.SUCCEEDED if approved else NodeStatus.FAILED
        await self.repository.transition_node(
            actor.tenant_id,
            run_id,
            row.node_key,
            from_status=NodeStatus.WAITING_APPROVAL,
            to_status=decided,
            error_code=None if approved else APPROVAL_REJECTED,
            error_message=None if approved else message,
            **common,
        )
        try:
            if approved:
                await self._launcher.approve(run, definition, row, decision)
            else:
                failure = NodeFailed(row.node_key, APPROVAL_REJECTED, message)
                await self._launcher.reject(run, definition, row, failure)
        except QuarryError:
            await self._undecide(run, row, decided)
            raise
        action = "workflow_run.approve" if approved else "workflow_run.reject"
        await self._record_run(actor, action, run, node=row.node_key, comment=comment)
        return await self._wait(run, wait_s)

    async def _undecide(self, run: WorkflowRun, row: WorkflowNodeRun, decided: NodeStatus) -> None:
        """The launcher did not take the decision on ``row``: it waits again, as its run (for
        the machine's own timeout to find it, or a decision sent again)."""
        await self.repository.transition_node(
            run.tenant_id,
            run.id,
            row.node_key,
            from_status=decided,
            to_status=NodeStatus.WAITING_APPROVAL,
            output=None,
            error_code=None,
            error_message=None,
            decided_by=None,
            decision=None,
            finished_at=None,
            duration_ms=None,
        )
        await self.repository.transition_run(
            run.tenant_id,
            run.id,
            from_statuses=[RunStatus.RUNNING],
            to_status=RunStatus.WAITING_APPROVAL,
        )

    async def _waiting(self, run: WorkflowRun) -> list[WorkflowNodeRun]:
        rows = await self.repository.node_runs(run.tenant_id, run.id)
        return [r for r in rows if r.status == NodeStatus.WAITING_APPROVAL]

    async def _expire(self, run: WorkflowRun) -> bool:
        """Rejects the run's approvals whose time is up (the run then fails there); whether it
        did. Only for runs in this process: Step Functions times its approval tasks out."""
        if run.status != RunStatus.WAITING_APPROVAL or not self._launcher.runs_in_process:
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
        await self._launcher.reject(run, definition, due[0], failure)
        await self._launcher.wait(run, None)
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

    async def _execute(
        self, run: WorkflowRun, definition: WorkflowDefinition, wait_s: float | None
    ) -> WorkflowRun:
        """Hands the ``running`` run to the launcher; a run it could not start is ``failed``
        (``workflow_not_started``, resumable)."""
        try:
            await self._launcher.execute(run, definition)
        except DependencyUnavailable as exc:
            now = self._clock()
            await self.repository.transition_run(
                run.tenant_id,
                run.id,
                from_statuses=[RunStatus.RUNNING],
                to_status=RunStatus.FAILED,
                error_code=NOT_STARTED,
                error_message=f"the run was not started: {exc.message}"[:4000],
                finished_at=now,
                duration_ms=_ms_between(run.created_at, now),
            )
            raise DependencyUnavailable(
                f"workflow run {run.id} was not started; resume it later",
                code=NOT_STARTED,
                details={"run_id": str(run.id), **exc.details},
            ) from exc
        return await self._wait(run, wait_s)

    async def _wait(self, run: WorkflowRun, wait_s: float | None) -> WorkflowRun:
        """The run once it finished or paused, or after ``wait_s`` (0: at once; None: no
        bound)."""
        await self._launcher.wait(run, wait_s)
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


def _not_active(run_id: uuid.UUID, status: str) -> Conflict:
    return Conflict(
        f"run {run_id} is {status}; only running or waiting runs can be cancelled",
        code="run_not_active",
    )


def _ms_between(start: datetime, end: datetime) -> float:
    return max((as_utc(end) - as_utc(start)).total_seconds() * 1000, 0.0)
