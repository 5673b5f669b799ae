from __future__ import annotations

import asyncio

import pytest

from shared.health import HealthCheck, check_readiness

pytestmark = pytest.mark.unit


async def ok() -> None:
    return None


async def broken() -> None:
    raise ConnectionError("refused")


async def slow() -> None:
    await asyncio.sleep(5)


async def test_all_ok_is_ready() -> None:
    report = await check_readiness([HealthCheck("a", ok), HealthCheck("b", ok)], timeout_s=1)
    assert report.ready
    assert report.status == "ok"
    assert all(c.latency_ms >= 0 for c in report.components)


async def test_required_failure_is_not_ready_and_says_why() -> None:
    report = await check_readiness([HealthCheck("db", broken)], timeout_s=1)
    assert not report.ready
    assert report.status == "down"
    assert report.components[0].error == "ConnectionError: refused"


async def test_optional_failure_degrades_but_stays_ready() -> None:
    report = await check_readiness(
        [HealthCheck("db", ok), HealthCheck("redis", broken, required=False)], timeout_s=1
    )
    assert report.ready
    assert report.status == "degraded"


async def test_each_check_has_its_own_timeout() -> None:
    report = await check_readiness([HealthCheck("milvus", slow)], timeout_s=0.05)
    assert report.components[0].status == "down"
    assert "no answer within 0.05 s" in (report.components[0].error or "")
