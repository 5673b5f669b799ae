"""Where workflow runs execute in the cloud: one Step Functions state machine per workflow
version, compiled by ``shared.workflows.asl``, each run one execution of it.

Locally runs execute in-process (``shared.workflows.engine``) and nothing implements this port;
``StepFunctionsWorkflowStateMachines`` (``shared.adapters``) is the cloud side.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from shared.workflows.definition import WorkflowDefinition


class WorkflowStateMachines(Protocol):
    async def deploy(self, tenant_id: uuid.UUID, definition: WorkflowDefinition) -> str:
        """Creates the state machine of this workflow version, or brings it up to date (a new
        compiler, another role); its ARN."""
        ...

    async def start(
        self,
        tenant_id: uuid.UUID,
        definition: WorkflowDefinition,
        *,
        run_id: uuid.UUID,
        run_input: dict[str, Any],
        execution_name: str | None = None,
    ) -> str:
        """Starts the recorded run ``run_id`` as an execution (named ``execution_name``, by
        default the run id, so that starting twice starts once), deploying the version's
        machine first if it is missing; the execution's ARN."""
        ...

    async def stop(
        self, tenant_id: uuid.UUID, definition: WorkflowDefinition, *, run_id: uuid.UUID
    ) -> None:
        """Stops the run's executions that are still running (a cancelled run)."""
        ...

    async def delete(self, tenant_id: uuid.UUID, name: str, versions: Iterable[int]) -> None:
        """Deletes the machines of these versions of workflow ``name`` (a deleted workflow)."""
        ...
