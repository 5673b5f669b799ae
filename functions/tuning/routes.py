"""HTTP routes of the tuning domain: the router's active thresholds, and a tuning run on demand
(the EventBridge schedule runs it too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from functions.common.dependencies import ContainerDep, KbReader, TenantManager
from functions.common.health_routes import domain_health_router
from shared.tuning.thresholds import Thresholds, TuningDecision

router = domain_health_router("tuning")


class ThresholdsOut(BaseModel):
    fast: float
    deep: float

    @classmethod
    def of(cls, thresholds: Thresholds) -> ThresholdsOut:
        return cls(fast=thresholds.fast, deep=thresholds.deep)


class TuningConfigOut(BaseModel):
    version: int  # 0: nothing tuned yet, the defaults from the settings
    thresholds: ThresholdsOut
    created_at: datetime | None


class TuningDecisionOut(BaseModel):
    outcome: Literal["applied", "skipped", "refused"]
    applied: bool
    reason: str
    thresholds: ThresholdsOut
    details: dict[str, Any]

    @classmethod
    def of(cls, decision: TuningDecision) -> TuningDecisionOut:
        return cls(
            outcome=decision.outcome,
            applied=decision.applied,
            reason=decision.reason,
            thresholds=ThresholdsOut.of(decision.thresholds),
            details=decision.details,
        )


@router.get("/v1/tuning/config")
async def tuning_config(_principal: KbReader, container: ContainerDep) -> TuningConfigOut:
    active = await container.tuning_service.active_config()
    return TuningConfigOut(
        version=active.version,
        thresholds=ThresholdsOut.of(active.thresholds),
        created_at=active.created_at,
    )


@router.post("/v1/tuning/run")
async def run_tuning(_principal: TenantManager, container: ContainerDep) -> TuningDecisionOut:
    """Re-fits the router's thresholds (shared by every tenant) now; tenant owners may ask."""
    service = container.tuning_service
    decision = await service.run(trigger="api")
    container.metrics.increment("tuning_runs", outcome=decision.outcome)
    return TuningDecisionOut.of(decision)
