"""The tuning domain's FastAPI app (served by Lambda through Mangum)."""

from __future__ import annotations

from functions.common.app_factory import create_app
from functions.tuning.routes import router

app = create_app("tuning", [router])
