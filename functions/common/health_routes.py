"""``GET /health`` (liveness) and ``GET /health/ready`` (every dependency, with latencies)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from functions.common.dependencies import ContainerDep
from shared.health import check_readiness

router = APIRouter(tags=["health"])


@router.get("/health")
async def liveness() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/ready")
async def readiness(container: ContainerDep) -> JSONResponse:
    report = await check_readiness(
        container.health_checks(), container.settings.observability.health_timeout_s
    )
    body: dict[str, Any] = {
        "status": report.status,
        "components": {
            c.name: {
                "status": c.status,
                "required": c.required,
                "latency_ms": c.latency_ms,
                **({"error": c.error} if c.error else {}),
            }
            for c in report.components
        },
    }
    return JSONResponse(status_code=200 if report.ready else 503, content=body)


def domain_health_router(service: str) -> APIRouter:
    """The per-domain liveness route, ``GET /v1/<service>/health`` (one API Gateway route each)."""
    domain_router = APIRouter(tags=[service])

    @domain_router.get(f"/v1/{service.replace('_', '-')}/health")
    async def domain_liveness() -> dict[str, str]:
        return {"status": "ok", "service": service}

    return domain_router
