"""Lambda entry point of the workflows domain: HTTP routes, and the tasks of the workflows' Step
Functions state machines (``{"kind": "workflow_node" | "workflow_end", ...}``, compiled by
``shared.workflows.asl``), each run by ``shared.workflows.task``. A failed task raises the
``WorkflowTaskError`` whose class name is the error name the state machine's retriers match."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.lambda_entry import make_lambda_handler, run_async
from functions.workflows.app import app


def on_other_event(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    container = app.state.container_provider.get()
    return run_async(container.workflow_tasks.run(event))


lambda_handler = make_lambda_handler(app, "workflows", on_other_event=on_other_event)
