"""Lambda entry point of the tuning domain."""

from __future__ import annotations

from functions.common.lambda_entry import make_lambda_handler
from functions.tuning.app import app

lambda_handler = make_lambda_handler(app, "tuning")
