"""Lambda entry point of the ingestion domain: HTTP routes; S3 / EventBridge notifications of
the documents bucket (an upload starts the ingestion saga, a removal deletes the document); and
the saga's tasks on Step Functions (``{"saga": "ingestion", "step" | "finish": ..., "state": ...}``:
a step, a compensation or the run's end, recorded in the run store)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.lambda_entry import make_lambda_handler, run_async
from functions.ingestion.app import app
from shared.ingestion.storage_events import handle_storage_event
from shared.sagas.task import run_task


def on_other_event(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    container = app.state.container_provider.get()
    if "saga" in event:
        definition = container.ingestion_service.definition
        return run_async(run_task(definition, event, container.saga_run_store))
    outcome = run_async(
        handle_storage_event(
            event,
            kbs=container.kb_service,
            repository=container.kb_repository,
            ingestion=container.ingestion_service,
        )
    )
    return asdict(outcome)


lambda_handler = make_lambda_handler(app, "ingestion", on_other_event=on_other_event)
