"""Lambda entry point of the auth domain."""

from __future__ import annotations

from functions.auth.app import app
from functions.common.lambda_entry import make_lambda_handler

lambda_handler = make_lambda_handler(app, "auth")
