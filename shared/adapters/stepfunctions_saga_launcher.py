"""Sagas on AWS Step Functions: the run is recorded, then started as an execution.

The state machine is the saga compiled by ``shared.sagas.asl``; its input is
``{"state": {...state, "run_id": ...}}`` and each task invokes the function that runs that step.
The execution is named after the run id, so a repeated start of one run cannot start a second
execution: Step Functions answers ``ExecutionAlreadyExists`` (taken as started) for a name it
has seen. If the execution cannot be started the run ends failed (resumable), as any failed run
ends (``end_run``: the saga's ``on_failure`` hook runs), and the call raises
``DependencyUnavailable``. boto3 is synchronous: the call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import ConfigurationError, DependencyUnavailable
from shared.sagas.definition import SagaDefinition, SagaState
from shared.sagas.runner import FAILED, SagaRunRecord, SagaRunStore, StepFailure, end_run

log = logging.getLogger(__name__)

ALREADY_STARTED = "ExecutionAlreadyExists"


class StepFunctionsSagaLauncher:
    def __init__(
        self,
        store: SagaRunStore,
        state_machine_arn: str,
        *,
        saga: str,
        client: Any = None,
        region: str | None = None,
    ) -> None:
        """``saga``: the name of the one saga the state machine runs. ``client``: a boto3
        ``stepfunctions`` client, built from ``region`` on the first start when None (the
        functions that only run saga steps never need one)."""
        self._store = store
        self._arn = state_machine_arn
        self._saga = saga
        self._region = region
        self._given_client: Any = client

    @cached_property
    def _client(self) -> Any:
        if self._given_client is not None:
            return self._given_client
        import boto3
        from botocore.config import Config

        return boto3.client(
            "stepfunctions", region_name=self._region, config=Config(retries={"mode": "standard"})
        )

    async def start(
        self,
        definition: SagaDefinition,
        *,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None,
        state: SagaState,
    ) -> SagaRunRecord:
        if definition.name != self._saga:
            raise ConfigurationError(
                f"the state machine {self._arn} runs the {self._saga} saga, not {definition.name}"
            )
        run_id = await self._store.create(
            definition.name, tenant_id, kb_id, state, [s.name for s in definition.steps]
        )
        run_state = {**state, "run_id": str(run_id)}
        try:
            await asyncio.to_thread(
                self._client.start_execution,
                stateMachineArn=self._arn,
                name=str(run_id),
                input=json.dumps({"state": run_state}, separators=(",", ":")),
            )
        except ClientError as exc:
            reason = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if reason != ALREADY_STARTED:
                await self._not_started(definition, run_id, run_state, reason)
                raise _unavailable(run_id, reason) from exc
            log.info("saga run %s was started already", run_id)
        except BotoCoreError as exc:
            await self._not_started(definition, run_id, run_state, type(exc).__name__)
            raise _unavailable(run_id, type(exc).__name__) from exc
        run = await self._store.load(run_id)
        assert run is not None
        return run

    async def _not_started(
        self, definition: SagaDefinition, run_id: uuid.UUID, state: SagaState, reason: str
    ) -> None:
        failure = StepFailure(
            None, "saga_not_started", f"Step Functions did not start the execution: {reason}"
        )
        await end_run(self._store, definition, run_id, FAILED, state, failure)


def _unavailable(run_id: uuid.UUID, reason: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"Step Functions did not start saga run {run_id}",
        code="saga_not_started",
        details={"run_id": str(run_id), "reason": reason},
    )
