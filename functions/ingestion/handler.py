"""Lambda entry point of the ingestion domain."""

from __future__ import annotations

from functions.common.lambda_entry import make_lambda_handler
from functions.ingestion.app import app

lambda_handler = make_lambda_handler(app, "ingestion")
