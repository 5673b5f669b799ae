"""HTTP routes of the query domain: ask a KB, and the tenant's query and cache figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from functions.common.dependencies import ContainerDep, KbManager, KbQueryCaller, KbReader
from functions.common.health_routes import domain_health_router
from functions.query.schemas import QueryBody, QueryOut
from shared.query.service import QueryRequest
from shared.query.stats import query_stats

router = APIRouter(tags=["query"])
router.include_router(domain_health_router("query"))


@router.post("/v1/kbs/{kb}/query")
async def query_kb(
    kb: str, body: QueryBody, principal: KbQueryCaller, container: ContainerDep
) -> QueryOut:
    result = await container.query_service.query(
        principal.tenant_id, kb, QueryRequest(**body.model_dump()), principal=principal
    )
    return QueryOut.model_validate(result)


@router.get("/v1/stats/queries")
async def stats_queries(
    principal: KbReader,
    container: ContainerDep,
    window_hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
) -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(hours=window_hours)
    await container.query_event_log.flush()  # include this process's buffered events
    rows = await container.query_repository.window(principal.tenant_id, since)
    return {"window_hours": window_hours, **query_stats(rows)}


@router.get("/v1/stats/cache")
async def stats_cache(_principal: KbManager, container: ContainerDep) -> dict[str, Any]:
    """Hit rates by level and mode of this process's cache (in Lambda: this instance's)."""
    return container.query_cache.stats()
