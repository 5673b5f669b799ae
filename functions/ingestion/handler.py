"""Lambda entry point of the ingestion domain: HTTP routes, and S3 / EventBridge notifications
of the documents bucket (an upload starts the ingestion saga; a removal deletes the document)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.lambda_entry import make_lambda_handler, run_async
from functions.ingestion.app import app
from shared.ingestion.storage_events import handle_storage_event


def on_storage_event(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    container = app.state.container_provider.get()
    outcome = run_async(
        handle_storage_event(
            event,
            kbs=container.kb_service,
            repository=container.kb_repository,
            ingestion=container.ingestion_service,
        )
    )
    return asdict(outcome)


lambda_handler = make_lambda_handler(app, "ingestion", on_other_event=on_storage_event)
