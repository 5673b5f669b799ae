"""Lambda entry point of the tuning domain: HTTP routes, and the EventBridge schedule (rule
``quarry-tuning``) that re-fits the router's thresholds."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.lambda_entry import make_lambda_handler, run_async
from functions.tuning.app import app
from shared.container import Container


def is_scheduled_event(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def on_other_event(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    if not is_scheduled_event(event):
        raise ValueError("quarry-tuning does not handle this event shape (HTTP or schedule only)")
    container: Container = app.state.container_provider.get()
    service = container.tuning_service
    decision = run_async(service.run(trigger="schedule"))
    container.metrics.increment("tuning_runs", outcome=decision.outcome)
    return decision.to_dict()


lambda_handler = make_lambda_handler(app, "tuning", on_other_event=on_other_event)
