"""Readiness: every dependency is checked concurrently, each under its own short timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["ok", "down"]


@dataclass(frozen=True)
class HealthCheck:
    name: str
    probe: Callable[[], Awaitable[None]]
    required: bool = True


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    status: Status
    required: bool
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class ReadinessReport:
    components: list[ComponentHealth] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(c.status == "ok" for c in self.components if c.required)

    @property
    def status(self) -> Literal["ok", "degraded", "down"]:
        if not self.ready:
            return "down"
        return "ok" if all(c.status == "ok" for c in self.components) else "degraded"


async def _run(check: HealthCheck, timeout_s: float) -> ComponentHealth:
    started = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(check.probe(), timeout=timeout_s)
    except TimeoutError:
        error = f"no answer within {timeout_s:g} s"
    except Exception as exc:  # a probe may fail in any way; report it, never raise
        error = f"{type(exc).__name__}: {exc}"[:300]
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(
        name=check.name,
        status="down" if error else "ok",
        required=check.required,
        latency_ms=latency_ms,
        error=error,
    )


async def check_readiness(checks: list[HealthCheck], timeout_s: float) -> ReadinessReport:
    results = await asyncio.gather(*(_run(check, timeout_s) for check in checks))
    return ReadinessReport(components=list(results))
