"""One factory for every FastAPI app: the six domain apps and the local combined app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.exc import SQLAlchemyError

from functions.common.dependencies import ContainerProvider
from functions.common.errors import install_error_handlers
from functions.common.health_routes import router as health_router
from functions.common.middleware import RequestContextMiddleware
from shared.container import Container
from shared.db.migrate import upgrade
from shared.observability.logging import configure_logging
from shared.observability.metrics import EmfMetrics, MetricsSink, PrometheusMetrics
from shared.settings import Settings, get_settings, running_in_lambda

log = logging.getLogger(__name__)


def make_metrics(settings: Settings, service: str) -> MetricsSink:
    if running_in_lambda():
        return EmfMetrics(settings.observability.metrics_namespace, service)
    return PrometheusMetrics(window=settings.observability.metrics_window)


def create_app(
    service: str,
    routers: Sequence[APIRouter],
    *,
    settings: Settings | None = None,
    prepare_on_startup: bool = False,
) -> FastAPI:
    """``prepare_on_startup`` (the local server): migrate the database, open the vector store
    and mark workflow runs the last server left ``running`` as interrupted, before the first
    request. Lambda apps skip it: migrations run as a deploy step."""
    settings = settings or get_settings()
    configure_logging(settings.observability.log_level, service=f"quarry-{service}")
    metrics = make_metrics(settings, service)
    provider = ContainerProvider(settings, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if prepare_on_startup:
            await _prepare(provider)
        try:
            yield
        finally:
            await provider.aclose()

    app = FastAPI(title=f"Quarry {service}", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.container_provider = provider
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        max_body_bytes=settings.server.max_body_bytes,
        slow_ms=settings.observability.slow_operation_ms,
    )
    if settings.server.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_allow_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.include_router(health_router)
    for router in routers:
        app.include_router(router)
    return app


async def _prepare(provider: ContainerProvider) -> None:
    container = provider.get()
    if container.settings.db.auto_migrate:
        await asyncio.to_thread(upgrade, container.settings.database_url)
    await container.vector_store.ping()
    if (
        container.runs_workflows_in_process
        and container.settings.workflows.recover_interrupted_runs_on_start
    ):
        await _recover_interrupted_runs(container)
    if container.settings.models.provider == "local":
        # Load the embedding model now, not in the first query's time budget.
        await asyncio.to_thread(container.embedder.embed, ["warm up"])
    log.info("quarry is ready", extra={"database": container.database.dialect})


async def _recover_interrupted_runs(container: Container) -> None:
    """This server is the one process executing workflow runs: a run still ``running`` was cut
    off by the last stop. A database that is down does not keep the server from starting (the
    readiness check reports it); the runs are then marked at the next start."""
    try:
        interrupted = await container.workflow_service.recover_interrupted_runs()
    except SQLAlchemyError:
        log.warning("interrupted workflow runs were not looked for", exc_info=True)
        return
    if interrupted:
        log.warning(
            "%d workflow run(s) were interrupted by the last stop; they can be resumed",
            interrupted,
        )
