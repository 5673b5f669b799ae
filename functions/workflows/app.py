"""The workflows domain's FastAPI app (served by Lambda through Mangum)."""

from __future__ import annotations

from functions.common.app_factory import create_app
from functions.workflows.routes import router

app = create_app("workflows", [router])
