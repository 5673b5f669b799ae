"""The saga launcher port: where a new saga run executes.

``SagaRunner`` (``shared.sagas.runner``) is the in-process launcher: it runs the saga to its end
and answers the finished record. ``StepFunctionsSagaLauncher`` hands the run to a Step Functions
state machine and answers the record while it is still ``running``. Either way the run record
exists before the first step, so the run can be looked up at once.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from shared.sagas.definition import SagaDefinition, SagaState
from shared.sagas.runner import SagaRunRecord


class SagaLauncher(Protocol):
    async def start(
        self,
        definition: SagaDefinition,
        *,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None,
        state: SagaState,
    ) -> SagaRunRecord:
        """Create the run and start it; the record as it stands when this returns."""
        ...
