"""Workflow definitions, runs and node runs in the database.

Every method takes the tenant and every statement filters on it: a workflow or run of another
tenant is simply not found (the one exception, ``fail_interrupted_runs``, is system work at the
start of the local server). Status changes that can race (a resume, a cancel, an approval) are
conditional updates that say whether they happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from shared.db.engine import Database
from shared.db.models import Workflow, WorkflowNodeRun, WorkflowRun, utcnow
from shared.errors import Conflict, NotFound

ACTIVE_RUN_STATUSES = ("running", "waiting_approval")


@dataclass(frozen=True)
class RunSample:
    """One run, as the statistics see it."""

    workflow: str
    status: str
    duration_ms: float | None


class WorkflowRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    # --- definitions ---------------------------------------------------------------------
    async def add_version(
        self,
        tenant_id: uuid.UUID,
        name: str,
        definition: dict[str, Any],
        *,
        description: str,
        created_by: str | None,
        new: bool,
    ) -> Workflow:
        """Stores the next version of workflow ``name``: version 1 when ``new`` (a Conflict if
        it exists), else the latest + 1 (NotFound if there is none). ``definition["version"]``
        is set to the stored version."""
        async with self._db.session() as session:
            latest = await session.scalar(
                select(func.max(Workflow.version)).where(
                    Workflow.tenant_id == tenant_id, Workflow.name == name
                )
            )
        if new and latest is not None:
            raise Conflict(f"a workflow named {name!r} already exists", code="workflow_exists")
        if not new and latest is None:
            raise _workflow_not_found(name)
        version = (latest or 0) + 1
        workflow = Workflow(
            tenant_id=tenant_id,
            name=name,
            version=version,
            description=description,
            definition={**definition, "version": version},
            created_by=created_by,
        )
        try:
            async with self._db.session() as session:
                session.add(workflow)
        except IntegrityError as exc:  # another writer took this version
            raise Conflict(
                f"workflow {name!r} changed concurrently; try again", code="workflow_conflict"
            ) from exc
        return workflow

    async def get_workflow(
        self, tenant_id: uuid.UUID, name: str, version: int | None = None
    ) -> Workflow:
        """A version of workflow ``name`` (the latest by default)."""
        query = select(Workflow).where(Workflow.tenant_id == tenant_id, Workflow.name == name)
        if version is not None:
            query = query.where(Workflow.version == version)
        query = query.order_by(Workflow.version.desc()).limit(1)
        async with self._db.session() as session:
            workflow = await session.scalar(query)
        if workflow is None:
            raise _workflow_not_found(name, version)
        return workflow

    async def get_workflow_by_id(self, tenant_id: uuid.UUID, workflow_id: uuid.UUID) -> Workflow:
        async with self._db.session() as session:
            workflow = await session.scalar(
                select(Workflow).where(Workflow.tenant_id == tenant_id, Workflow.id == workflow_id)
            )
        if workflow is None:
            raise NotFound(f"workflow {workflow_id} does not exist", code="workflow_not_found")
        return workflow

    async def list_workflows(self, tenant_id: uuid.UUID) -> Sequence[Workflow]:
        """The latest version of each of the tenant's workflows, by name."""
        latest = (
            select(Workflow.name, func.max(Workflow.version).label("version"))
            .where(Workflow.tenant_id == tenant_id)
            .group_by(Workflow.name)
            .subquery()
        )
        query = (
            select(Workflow)
            .join(
                latest,
                (Workflow.name == latest.c.name) & (Workflow.version == latest.c.version),
            )
            .where(Workflow.tenant_id == tenant_id)
            .order_by(Workflow.name)
        )
        async with self._db.session() as session:
            return (await session.scalars(query)).all()

    async def delete_workflow(self, tenant_id: uuid.UUID, name: str) -> list[int]:
        """Deletes every version and their runs; refused while a run is active. The versions
        deleted."""
        async with self._db.session() as session:
            versions = (
                await session.execute(
                    select(Workflow.id, Workflow.version).where(
                        Workflow.tenant_id == tenant_id, Workflow.name == name
                    )
                )
            ).all()
            ids = [workflow_id for workflow_id, _ in versions]
            if not ids:
                raise _workflow_not_found(name)
            active = await session.scalar(
                select(func.count())
                .select_from(WorkflowRun)
                .where(
                    WorkflowRun.tenant_id == tenant_id,
                    WorkflowRun.workflow_id.in_(ids),
                    WorkflowRun.status.in_(ACTIVE_RUN_STATUSES),
                )
            )
            if active:
                raise Conflict(
                    f"workflow {name!r} has {active} active run(s); cancel them first",
                    code="workflow_has_active_runs",
                )
            run_ids = select(WorkflowRun.id).where(
                WorkflowRun.tenant_id == tenant_id, WorkflowRun.workflow_id.in_(ids)
            )
            await session.execute(
                delete(WorkflowNodeRun).where(
                    WorkflowNodeRun.tenant_id == tenant_id, WorkflowNodeRun.run_id.in_(run_ids)
                )
            )
            await session.execute(
                delete(WorkflowRun).where(
                    WorkflowRun.tenant_id == tenant_id, WorkflowRun.workflow_id.in_(ids)
                )
            )
            await session.execute(
                delete(Workflow).where(Workflow.tenant_id == tenant_id, Workflow.id.in_(ids))
            )
        return sorted(version for _, version in versions)

    # --- runs ----------------------------------------------------------------------------
    async def create_run(
        self,
        tenant_id: uuid.UUID,
        workflow: Workflow,
        run_input: dict[str, Any],
        *,
        started_by: str | None,
        acting_as: dict[str, str] | None = None,
    ) -> WorkflowRun:
        if workflow.tenant_id != tenant_id:
            raise _workflow_not_found(workflow.name)
        run = WorkflowRun(
            tenant_id=tenant_id,
            workflow_id=workflow.id,
            workflow_name=workflow.name,
            workflow_version=workflow.version,
            status="running",
            input=run_input,
            context={},
            started_by=started_by,
            acting_as=acting_as or {},
        )
        async with self._db.session() as session:
            session.add(run)
        return run

    async def get_run(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> WorkflowRun:
        async with self._db.session() as session:
            run = await session.scalar(
                select(WorkflowRun).where(
                    WorkflowRun.tenant_id == tenant_id, WorkflowRun.id == run_id
                )
            )
        if run is None:
            raise NotFound(f"workflow run {run_id} does not exist", code="run_not_found")
        return run

    async def list_runs(
        self,
        tenant_id: uuid.UUID,
        *,
        workflow_name: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Sequence[WorkflowRun]:
        query = select(WorkflowRun).where(WorkflowRun.tenant_id == tenant_id)
        if workflow_name is not None:
            query = query.where(WorkflowRun.workflow_name == workflow_name)
        if status is not None:
            query = query.where(WorkflowRun.status == status)
        query = (
            query.order_by(WorkflowRun.created_at.desc(), WorkflowRun.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._db.session() as session:
            return (await session.scalars(query)).all()

    async def transition_run(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        *,
        from_statuses: Collection[str],
        to_status: str,
        **values: Any,
    ) -> bool:
        """Moves the run to ``to_status`` (with ``values``) only if it is in one of
        ``from_statuses``; False if it was not (someone else moved it first)."""
        async with self._db.session() as session:
            result = await session.execute(
                update(WorkflowRun)
                .where(
                    WorkflowRun.tenant_id == tenant_id,
                    WorkflowRun.id == run_id,
                    WorkflowRun.status.in_(list(from_statuses)),
                )
                .values(status=to_status, updated_at=utcnow(), **values)
            )
        return bool(getattr(result, "rowcount", 0))

    async def restart_run(
        self, tenant_id: uuid.UUID, run_id: uuid.UUID, *, from_statuses: Collection[str]
    ) -> bool:
        """Moves the run back to ``running`` for a resume, only if it is in one of
        ``from_statuses``: clears how it ended and counts the resume (``resumes``, in the same
        statement, so two resumes never get one number)."""
        return await self.transition_run(
            tenant_id,
            run_id,
            from_statuses=from_statuses,
            to_status="running",
            output=None,
            error_code=None,
            error_message=None,
            failed_node=None,
            finished_at=None,
            duration_ms=None,
            resumes=WorkflowRun.resumes + 1,
        )

    async def fail_interrupted_runs(self, finished_at: datetime, *, code: str, message: str) -> int:
        """Every tenant's runs still ``running`` become ``failed`` with ``code`` and ``message``,
        their ``running`` node runs too (their ``waiting_approval`` ones ``cancelled``, as in a
        failed run); how many runs. For a process that knows no run can be executing (see
        ``WorkflowService.recover_interrupted_runs``)."""
        async with self._db.session() as session:
            run_ids = (
                await session.scalars(select(WorkflowRun.id).where(WorkflowRun.status == "running"))
            ).all()
            if not run_ids:
                return 0
            nodes = update(WorkflowNodeRun).where(WorkflowNodeRun.run_id.in_(run_ids))
            await session.execute(
                nodes.where(WorkflowNodeRun.status == "running").values(
                    status="failed",
                    error_code=code,
                    error_message=message,
                    finished_at=finished_at,
                )
            )
            await session.execute(
                nodes.where(WorkflowNodeRun.status == "waiting_approval").values(
                    status="cancelled", finished_at=finished_at
                )
            )
            await session.execute(
                update(WorkflowRun)
                .where(WorkflowRun.id.in_(run_ids), WorkflowRun.status == "running")
                .values(
                    status="failed",
                    error_code=code,
                    error_message=message,
                    finished_at=finished_at,
                    updated_at=utcnow(),
                )
            )
        return len(run_ids)

    async def run_status(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> str:
        async with self._db.session() as session:
            status = await session.scalar(
                select(WorkflowRun.status).where(
                    WorkflowRun.tenant_id == tenant_id, WorkflowRun.id == run_id
                )
            )
        if status is None:
            raise NotFound(f"workflow run {run_id} does not exist", code="run_not_found")
        return status

    async def run_samples(self, tenant_id: uuid.UUID, since: datetime) -> list[RunSample]:
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(WorkflowRun.workflow_name, WorkflowRun.status, WorkflowRun.duration_ms)
                    .where(WorkflowRun.tenant_id == tenant_id, WorkflowRun.created_at >= since)
                    .order_by(WorkflowRun.created_at)
                )
            ).all()
        return [RunSample(name, status, duration) for name, status, duration in rows]

    async def tool_calls(self, tenant_id: uuid.UUID, since: datetime) -> list[list[str]]:
        """The tool names each node run called since ``since`` (tool and agent nodes)."""
        async with self._db.session() as session:
            rows = (
                await session.scalars(
                    select(WorkflowNodeRun.tools).where(
                        WorkflowNodeRun.tenant_id == tenant_id,
                        WorkflowNodeRun.node_type.in_(("tool", "agent")),
                        WorkflowNodeRun.started_at >= since,
                    )
                )
            ).all()
        return [list(tools or []) for tools in rows]

    # --- node runs -----------------------------------------------------------------------
    async def node_runs(self, tenant_id: uuid.UUID, run_id: uuid.UUID) -> Sequence[WorkflowNodeRun]:
        """The run's node runs, in the order they started."""
        async with self._db.session() as session:
            query = (
                select(WorkflowNodeRun)
                .where(WorkflowNodeRun.tenant_id == tenant_id, WorkflowNodeRun.run_id == run_id)
                .order_by(WorkflowNodeRun.started_at, WorkflowNodeRun.node_key)
            )
            return (await session.scalars(query)).all()

    async def node_run(
        self, tenant_id: uuid.UUID, run_id: uuid.UUID, node_key: str
    ) -> WorkflowNodeRun | None:
        """The node run ``node_key`` of the run, if it exists."""
        async with self._db.session() as session:
            return await session.scalar(
                select(WorkflowNodeRun).where(
                    WorkflowNodeRun.tenant_id == tenant_id,
                    WorkflowNodeRun.run_id == run_id,
                    WorkflowNodeRun.node_key == node_key,
                )
            )

    async def save_node(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        node_key: str,
        *,
        node_id: str,
        node_type: str,
        **values: Any,
    ) -> None:
        """Creates or updates the node run ``node_key`` of the run with ``values``."""
        async with self._db.session() as session:
            existing = await session.scalar(
                select(WorkflowNodeRun.id).where(
                    WorkflowNodeRun.tenant_id == tenant_id,
                    WorkflowNodeRun.run_id == run_id,
                    WorkflowNodeRun.node_key == node_key,
                )
            )
            if existing is None:
                session.add(
                    WorkflowNodeRun(
                        tenant_id=tenant_id,
                        run_id=run_id,
                        node_key=node_key,
                        node_id=node_id,
                        node_type=node_type,
                        **values,
                    )
                )
            else:
                await session.execute(
                    update(WorkflowNodeRun)
                    .where(WorkflowNodeRun.tenant_id == tenant_id, WorkflowNodeRun.id == existing)
                    .values(**values)
                )

    async def cancel_open_nodes(
        self, tenant_id: uuid.UUID, run_id: uuid.UUID, finished_at: datetime
    ) -> None:
        """Node runs still running or waiting for approval become ``cancelled``."""
        async with self._db.session() as session:
            await session.execute(
                update(WorkflowNodeRun)
                .where(
                    WorkflowNodeRun.tenant_id == tenant_id,
                    WorkflowNodeRun.run_id == run_id,
                    WorkflowNodeRun.status.in_(("running", "waiting_approval")),
                )
                .values(status="cancelled", finished_at=finished_at)
            )

    async def transition_node(
        self,
        tenant_id: uuid.UUID,
        run_id: uuid.UUID,
        node_key: str,
        *,
        from_status: str,
        to_status: str,
        **values: Any,
    ) -> bool:
        """Moves a node run from ``from_status`` to ``to_status``; False if it was not there."""
        async with self._db.session() as session:
            result = await session.execute(
                update(WorkflowNodeRun)
                .where(
                    WorkflowNodeRun.tenant_id == tenant_id,
                    WorkflowNodeRun.run_id == run_id,
                    WorkflowNodeRun.node_key == node_key,
                    WorkflowNodeRun.status == from_status,
                )
                .values(status=to_status, **values)
            )
        return bool(getattr(result, "rowcount", 0))


def _workflow_not_found(name: str, version: int | None = None) -> NotFound:
    suffix = f" version {version}" if version is not None else ""
    return NotFound(f"workflow {name!r}{suffix} does not exist", code="workflow_not_found")
