"""The kb_admin domain's FastAPI app (served by Lambda through Mangum)."""

from __future__ import annotations

from functions.common.app_factory import create_app
from functions.kb_admin.routes import router

app = create_app("kb_admin", [router])
