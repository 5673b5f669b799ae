"""The auth domain's FastAPI app (served by Lambda through Mangum)."""

from __future__ import annotations

from functions.auth.routes import router
from functions.common.app_factory import create_app

app = create_app("auth", [router])
