"""The in-process limiter, the fall-back wrapper and ``check`` with fakes (no Redis)."""

from __future__ import annotations

import pytest

from shared.auth.rate_limit import (
    FallbackRateLimiter,
    InProcessRateLimiter,
    RateDecision,
    RateLimit,
    check,
)
from shared.errors import DependencyUnavailable, RateLimited

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FailingLimiter:
    def __init__(self) -> None:
        self.calls = 0

    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        self.calls += 1
        raise DependencyUnavailable("redis down", code="rate_limiter_unavailable")


async def test_in_process_allows_the_limit_then_reports_when_to_retry() -> None:
    clock = Clock()
    limiter = InProcessRateLimiter(clock=clock)
    assert [(await limiter.hit("k", 3, 1.0)).remaining for _ in range(3)] == [2, 1, 0]
    clock.now += 0.25
    refused = await limiter.hit("k", 3, 1.0)
    assert refused == RateDecision(False, 0, pytest.approx(0.75))  # type: ignore[arg-type]
    clock.now += 0.75  # the first three leave the window exactly now
    assert (await limiter.hit("k", 3, 1.0)).allowed


async def test_check_rounds_retry_after_up_to_at_least_one_second() -> None:
    clock = Clock()
    limiter = InProcessRateLimiter(clock=clock)
    rule = RateLimit(1, 0.5)
    await check(limiter, principal="user:1", route="r", rule=rule)
    with pytest.raises(RateLimited) as refused:
        await check(limiter, principal="user:1", route="r", rule=rule)
    assert refused.value.retry_after_s == 1
    assert refused.value.code == "rate_limited"


async def test_fallback_skips_a_failing_primary_for_a_while() -> None:
    clock = Clock()
    primary = FailingLimiter()
    limiter = FallbackRateLimiter(
        primary, InProcessRateLimiter(clock=clock), retry_primary_after_s=5, clock=clock
    )
    assert [(await limiter.hit("k", 2, 60)).allowed for _ in range(3)] == [True, True, False]
    assert primary.calls == 1
    clock.now += 5
    await limiter.hit("k", 2, 60)
    assert primary.calls == 2


@pytest.mark.parametrize(("limit", "window_s"), [(0, 1.0), (1, 0.0), (-1, 5.0)])
async def test_nonsense_limits_are_refused(limit: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="a rate limit needs"):
        RateLimit(limit, window_s)
    with pytest.raises(ValueError, match="a rate limit needs"):
        await InProcessRateLimiter().hit("k", limit, window_s)
