"""Lambda entry point of the kb_admin domain."""

from __future__ import annotations

from functions.common.lambda_entry import make_lambda_handler
from functions.kb_admin.app import app

lambda_handler = make_lambda_handler(app, "kb_admin")
