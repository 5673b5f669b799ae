"""Where the runs of ``WorkflowService`` execute: the one seam between the service (records,
permissions, audit) and what executes a run. The container picks one from the settings
(``QUARRY_SAGA_RUNNER``):

- ``LocalWorkflowLauncher`` (``local``): the engine (``shared.workflows.engine``) runs each run
  as an asyncio task of this process; an approval's decision continues the run in the engine.
- ``StepFunctionsWorkflowLauncher`` (``stepfunctions``): each run is an execution of its
  workflow version's state machine (``shared.ports.workflow_state_machines``), whose tasks the
  workflows function runs (``shared.workflows.task``); an approval's decision is sent with its
  task token (``shared.ports.task_tokens``), and the machine times approvals out itself.

The service records a start, decision, cancel or resume first, then hands it to the launcher; a
launcher that cannot take it raises (``DependencyUnavailable``, ``Conflict``) and the service
undoes what it recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from shared.db.models import WorkflowNodeRun, WorkflowRun
from shared.db.workflow_repository import WorkflowRepository
from shared.errors import Conflict, DependencyUnavailable
from shared.ports.task_tokens import TaskTokens
from shared.ports.workflow_state_machines import WorkflowStateMachines
from shared.workflows.definition import WorkflowDefinition
from shared.workflows.engine import (
    APPROVAL_REJECTED,
    NodeFailed,
    NodeStatus,
    RunStatus,
    WorkflowEngine,
)

log = logging.getLogger(__name__)

WAIT_POLL_INTERVAL_S = 0.5


class WorkflowLauncher(Protocol):
    #: Whether runs execute in this process. Then the service rejects overdue approvals itself,
    #: and a run left ``running`` by a stopped process is known to be interrupted.
    runs_in_process: bool

    async def execute(self, run: WorkflowRun, definition: WorkflowDefinition) -> None:
        """Executes the recorded ``running`` run: from its start, or after a resume
        (``run.resumes`` > 0: nodes that succeeded are not run again)."""
        ...

    async def approve(
        self,
        run: WorkflowRun,
        definition: WorkflowDefinition,
        approval: WorkflowNodeRun,
        decision: dict[str, Any],
    ) -> None:
        """The waiting ``approval`` was approved (recorded, the run ``running``): the run goes
        on, with ``decision`` as the approval's output."""
        ...

    async def reject(
        self,
        run: WorkflowRun,
        definition: WorkflowDefinition,
        approval: WorkflowNodeRun,
        failure: NodeFailed,
    ) -> None:
        """The waiting ``approval`` was rejected (recorded, the run ``running``): the run fails
        there with ``failure`` and compensates."""
        ...

    async def stop(self, run: WorkflowRun, definition: WorkflowDefinition) -> None:
        """Stops executing the run (it is being cancelled)."""
        ...

    async def wait(self, run: WorkflowRun, wait_s: float | None) -> None:
        """Returns once the run is no longer ``running`` (finished or paused), or after
        ``wait_s`` seconds (0: at once; None: no bound)."""
        ...

    async def discard(self, tenant_id: uuid.UUID, name: str, versions: Sequence[int]) -> None:
        """Workflow ``name`` was deleted with these versions: drops what executed them."""
        ...

    async def aclose(self) -> None:
        """Stops what this process executes."""
        ...


class LocalWorkflowLauncher:
    """Runs in this process, each as an asyncio task of the engine."""

    runs_in_process = True

    def __init__(self, engine: WorkflowEngine) -> None:
        self._engine = engine
        self._tasks: dict[uuid.UUID, asyncio.Task[Any]] = {}

    async def execute(self, run: WorkflowRun, definition: WorkflowDefinition) -> None:
        self._launch(run, self._engine.execute(run, definition))

    async def approve(
        self,
        run: WorkflowRun,
        definition: WorkflowDefinition,
        approval: WorkflowNodeRun,
        decision: dict[str, Any],
    ) -> None:
        # The engine reads the approval's recorded output, as any succeeded node's.
        self._launch(run, self._engine.execute(run, definition))

    async def reject(
        self,
        run: WorkflowRun,
        definition: WorkflowDefinition,
        approval: WorkflowNodeRun,
        failure: NodeFailed,
    ) -> None:
        self._launch(run, self._engine.fail(run, definition, failure))

    async def stop(self, run: WorkflowRun, definition: WorkflowDefinition) -> None:
        task = self._tasks.get(run.id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def wait(self, run: WorkflowRun, wait_s: float | None) -> None:
        task = self._tasks.get(run.id)
        if task is not None and (wait_s is None or wait_s > 0):
            await asyncio.wait([task], timeout=wait_s)

    async def discard(self, tenant_id: uuid.UUID, name: str, versions: Sequence[int]) -> None:
        """Nothing outlives a workflow here."""

    async def aclose(self) -> None:
        """Stops the runs this process is executing (they stay ``running`` in the database)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _launch(self, run: WorkflowRun, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks[run.id] = task

        def done(finished: asyncio.Task[Any]) -> None:
            if self._tasks.get(run.id) is finished:
                del self._tasks[run.id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "workflow run %s stopped on an error", run.id, exc_info=finished.exception()
                )

        task.add_done_callback(done)


class StepFunctionsWorkflowLauncher:
    """Runs as executions of their version's state machine: the first named after the run,
    resume n as ``<run id>-<n>`` (a repeated start of one of them starts it once)."""

    runs_in_process = False

    def __init__(
        self,
        repository: WorkflowRepository,
        machines: WorkflowStateMachines,
        tokens: TaskTokens,
        *,
        poll_interval_s: float = WAIT_POLL_INTERVAL_S,
    ) -> None:
        """``poll_interval_s``: how often ``wait`` reads the run's status."""
        self._repository = repository
        self._machines = machines
        self._tokens = tokens
        self._poll_interval_s = poll_interval_s

    async def execute(self, run: WorkflowRun, definition: WorkflowDefinition) -> None:
        await self._machines.start(
            run.tenant_id,
            definition,
            run_id=run.id,
            run_input=run.input,
            execution_name=execution_name(run),
        )

    async def approve(
        self,
        run: WorkflowRun,
        definition: WorkflowDefinition,
        approval: WorkflowNodeRun,
        decision: dict[str, Any],
    ) -> None:
        await self._tokens.succeed(_token(approval), decision)
        # Another approval may still wait (a parallel branch): the run waits while one does.
        rows = await self._repository.node_runs(run.tenant_id, run.id)
        if any(row.status == NodeStatus.WAITING_APPROVAL for row in rows):
            await self._repository.transition_run(
                run.tenant_id,
                run.id,
                from_statuses=[RunStatus.RUNNING],
                to_status=RunStatus.WAITING_APPROVAL,
            )

    async def reject(
        self,
        run: WorkflowRun,
        definition: WorkflowDefinition,
        approval: WorkflowNodeRun,
        failure: NodeFailed,
    ) -> None:
        # The cause is what the task's ``workflow_end`` reads back (``failure_of``).
        cause = {"node": failure.key, "code": failure.code, "message": failure.message}
        await self._tokens.fail(_token(approval), error=APPROVAL_REJECTED, cause=json.dumps(cause))

    async def stop(self, run: WorkflowRun, definition: WorkflowDefinition) -> None:
        await self._machines.stop(run.tenant_id, definition, run_id=run.id)

    async def wait(self, run: WorkflowRun, wait_s: float | None) -> None:
        if wait_s is not None and wait_s <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                while True:
                    status = await self._repository.run_status(run.tenant_id, run.id)
                    if status != RunStatus.RUNNING:
                        return
                    await asyncio.sleep(self._poll_interval_s)

    async def discard(self, tenant_id: uuid.UUID, name: str, versions: Sequence[int]) -> None:
        """Deletes the versions' state machines. The workflow is gone either way: machines left
        behind by an unavailable Step Functions are only logged (a workflow of that name and
        version made later brings its machine up to date)."""
        try:
            await self._machines.delete(tenant_id, name, versions)
        except DependencyUnavailable:
            log.warning(
                "the state machines of deleted workflow %r (versions %s) are left behind",
                name,
                ", ".join(map(str, versions)),
                exc_info=True,
            )

    async def aclose(self) -> None:
        """Nothing runs in this process."""


def execution_name(run: WorkflowRun) -> str:
    """The run's execution: the run id, then ``<run id>-<n>`` for resume n."""
    return str(run.id) if run.resumes == 0 else f"{run.id}-{run.resumes}"


def _token(approval: WorkflowNodeRun) -> str:
    if approval.task_token is None:  # recorded by the local engine, before runs moved
        raise Conflict(
            f"approval {approval.node_key} has no task token: no state machine waits for it",
            code="task_not_waiting",
        )
    return approval.task_token
