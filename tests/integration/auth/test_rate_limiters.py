"""The rate limiter contract on Redis and in process, and the fall-back when Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.adapters.redis_client import create_redis
from shared.adapters.redis_rate_limiter import DEFAULT_PREFIX, RedisRateLimiter
from shared.auth.rate_limit import (
    FallbackRateLimiter,
    InProcessRateLimiter,
    RateDecision,
    RateLimit,
    RateLimiter,
    check,
)
from shared.errors import DependencyUnavailable, RateLimited

pytestmark = pytest.mark.integration

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["redis", "in_process"])
def limiter(request: pytest.FixtureRequest, clock: Clock) -> RateLimiter:
    if request.param == "in_process":
        return InProcessRateLimiter(clock=clock)
    return RedisRateLimiter(request.getfixturevalue("redis_client"), clock=clock)


async def test_exactly_the_limit_is_allowed_then_refused_with_retry_after(
    limiter: RateLimiter, clock: Clock
) -> None:
    decisions = []
    for _ in range(5):
        decisions.append(await limiter.hit("user:1|POST /query", 5, 60))
        clock.now += 1
    assert [d.allowed for d in decisions] == [True] * 5
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]

    refused = await limiter.hit("user:1|POST /query", 5, 60)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after_s == pytest.approx(55, abs=0.01)  # the first hit leaves at 60 s
    assert (await limiter.hit("user:2|POST /query", 5, 60)).allowed  # keys are independent


async def test_the_window_slides(limiter: RateLimiter, clock: Clock) -> None:
    for _ in range(3):
        assert (await limiter.hit("k", 3, 10)).allowed
        clock.now += 2  # hits at 0, 2 and 4 s
    assert not (await limiter.hit("k", 3, 10)).allowed  # at 6 s

    clock.now += 4.5  # 10.5 s: the hit at 0 s has left the window, the others have not
    assert (await limiter.hit("k", 3, 10)).allowed
    refused = await limiter.hit("k", 3, 10)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(1.5, abs=0.01)  # the 2 s hit leaves at 12 s
    clock.now += 1.5
    assert (await limiter.hit("k", 3, 10)).allowed


async def test_refused_requests_do_not_extend_the_window(
    limiter: RateLimiter, clock: Clock
) -> None:
    assert (await limiter.hit("k", 1, 5)).allowed
    for _ in range(10):
        clock.now += 0.4
        assert not (await limiter.hit("k", 1, 5)).allowed
    clock.now += 1.01
    assert (await limiter.hit("k", 1, 5)).allowed


async def test_check_raises_rate_limited_in_whole_seconds(
    limiter: RateLimiter, clock: Clock
) -> None:
    rule = RateLimit(limit=2, window_s=30)
    await check(limiter, principal="api_key:9", route="GET /kbs", rule=rule)
    clock.now += 0.2
    second = await check(limiter, principal="api_key:9", route="GET /kbs", rule=rule)
    assert second.remaining == 0
    with pytest.raises(RateLimited) as refused:
        await check(limiter, principal="api_key:9", route="GET /kbs", rule=rule)
    assert refused.value.status_code == 429
    assert refused.value.retry_after_s == 30  # 29.8 s rounded up
    assert refused.value.details == {"retry_after_s": 30}
    await check(limiter, principal="api_key:9", route="POST /query", rule=rule)  # other route


async def test_concurrent_hits_on_redis_never_over_admit(redis_client: Redis) -> None:
    limiters = [RedisRateLimiter(redis_client) for _ in range(4)]  # as if four instances
    decisions = await asyncio.gather(*(limiters[i % 4].hit("burst", 10, 60) for i in range(60)))
    assert sum(d.allowed for d in decisions) == 10
    ttl_ms = await redis_client.pttl(DEFAULT_PREFIX + "burst")
    assert 0 < ttl_ms <= 60_000  # the log expires with its window


async def test_in_process_limiter_is_thread_safe_and_bounded() -> None:
    limiter = InProcessRateLimiter(max_keys=100)

    def burst() -> int:
        return sum(limiter.hit_now("shared", 50, 60).allowed for _ in range(40))

    allowed = await asyncio.gather(*(asyncio.to_thread(burst) for _ in range(5)))
    assert sum(allowed) == 50
    for i in range(500):
        limiter.hit_now(f"key-{i}", 1, 60)
    assert len(limiter._hits) == 100


async def test_redis_down_falls_back_to_in_process_counts(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    dead = create_redis(CLOSED_PORT_URL, timeout_s=0.5)
    try:
        primary = RedisRateLimiter(dead, clock=clock)
        with pytest.raises(DependencyUnavailable) as down:
            await primary.hit("k", 1, 60)
        assert down.value.code == "rate_limiter_unavailable"

        limiter = FallbackRateLimiter(
            primary, InProcessRateLimiter(clock=clock), retry_primary_after_s=5, clock=clock
        )
        decisions = [await limiter.hit("k", 2, 60) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert limiter.degraded
        assert sum("falls back" in r.getMessage() for r in caplog.records) == 1
    finally:
        await dead.aclose()


async def test_fallback_returns_to_redis_when_it_answers_again(
    redis_client: Redis, clock: Clock
) -> None:
    class Flaky:
        def __init__(self, real: RateLimiter) -> None:
            self.real, self.failing, self.calls = real, True, 0

        async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
            self.calls += 1
            if self.failing:
                raise DependencyUnavailable("down", code="rate_limiter_unavailable")
            return await self.real.hit(key, limit, window_s)

    flaky = Flaky(RedisRateLimiter(redis_client, clock=clock))
    limiter = FallbackRateLimiter(
        flaky, InProcessRateLimiter(clock=clock), retry_primary_after_s=5, clock=clock
    )
    await limiter.hit("k", 10, 60)
    await limiter.hit("k", 10, 60)  # within the pause: Redis is not even tried
    assert flaky.calls == 1
    flaky.failing = False
    clock.now += 5
    decision = await limiter.hit("k", 10, 60)
    assert flaky.calls == 2
    assert decision.remaining == 9  # counted by Redis, which had not seen the earlier hits
    assert not limiter.degraded
