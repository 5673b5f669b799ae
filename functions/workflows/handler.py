"""Lambda entry point of the workflows domain."""

from __future__ import annotations

from functions.common.lambda_entry import make_lambda_handler
from functions.workflows.app import app

lambda_handler = make_lambda_handler(app, "workflows")
