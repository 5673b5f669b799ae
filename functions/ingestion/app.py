"""The ingestion domain's FastAPI app (served by Lambda through Mangum)."""

from __future__ import annotations

from functions.common.app_factory import create_app
from functions.ingestion.routes import router

app = create_app("ingestion", [router])
