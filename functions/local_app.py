"""The local combined app: every domain's routes in one server, plus ``GET /metrics``."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from functions.auth.routes import router as auth_router
from functions.common.app_factory import create_app
from functions.ingestion.routes import router as ingestion_router
from functions.kb_admin.routes import router as kb_admin_router
from functions.query.routes import router as query_router
from functions.tuning.routes import router as tuning_router
from functions.workflows.routes import router as workflows_router
from shared.observability.metrics import PrometheusMetrics
from shared.settings import Settings

DOMAIN_ROUTERS = [
    auth_router,
    kb_admin_router,
    ingestion_router,
    query_router,
    workflows_router,
    tuning_router,
]


def create_local_app(settings: Settings | None = None) -> FastAPI:
    app = create_app("local", DOMAIN_ROUTERS, settings=settings, prepare_on_startup=True)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        metrics = request.app.state.metrics
        body = metrics.render() if isinstance(metrics, PrometheusMetrics) else b""
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    return app
