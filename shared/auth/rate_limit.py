"""Rate limits per principal and route: a sliding-window log of accepted requests.

``RateLimiter`` is the port: ``RedisRateLimiter`` shares counts across every instance, the
``InProcessRateLimiter`` here counts within one process (the local profile, and the fallback).
``FallbackRateLimiter`` fails open to the local limiter when Redis errors, so an outage degrades
limits to per-instance instead of refusing or unthrottling every request. Refused requests are
not recorded: a client that keeps hammering does not push its own window further out.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.errors import DependencyUnavailable, RateLimited

log = logging.getLogger(__name__)

DEFAULT_MAX_KEYS = 100_000  # the in-process limiter forgets the least recently used beyond this
PRIMARY_RETRY_AFTER_S = 5.0  # after a Redis error, use the local limiter this long


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    remaining: int  # requests still allowed in the current window
    retry_after_s: float  # 0 when allowed; else when the oldest counted request leaves


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window_s: float

    def __post_init__(self) -> None:
        validate_limit(self.limit, self.window_s)


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        """Counts one request under ``key`` if fewer than ``limit`` were accepted in the last
        ``window_s`` seconds. Adapters whose backend fails raise ``DependencyUnavailable``."""
        ...


async def check(
    limiter: RateLimiter, *, principal: str, route: str, rule: RateLimit
) -> RateDecision:
    """Counts the request; raises ``RateLimited`` (whole seconds, at least 1) when over."""
    decision = await limiter.hit(f"{principal}|{route}", rule.limit, rule.window_s)
    if not decision.allowed:
        retry_after_s = max(1, math.ceil(decision.retry_after_s))
        raise RateLimited(
            f"rate limit of {rule.limit} per {rule.window_s:g} s reached; retry in "
            f"{retry_after_s} s",
            retry_after_s=retry_after_s,
        )
    return decision


class InProcessRateLimiter:
    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        return self.hit_now(key, limit, window_s)

    def hit_now(self, key: str, limit: int, window_s: float) -> RateDecision:
        validate_limit(limit, window_s)
        with self._lock:
            now = self._clock()
            hits = self._hits.pop(key, None) or deque()
            self._hits[key] = hits  # most recently used last
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            if len(hits) < limit:
                hits.append(now)
                decision = RateDecision(True, limit - len(hits), 0.0)
            else:
                decision = RateDecision(False, 0, hits[0] + window_s - now)
            while len(self._hits) > self._max_keys:
                self._hits.popitem(last=False)
            return decision


class FallbackRateLimiter:
    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter,
        *,
        retry_primary_after_s: float = PRIMARY_RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._retry_after_s = retry_primary_after_s
        self._clock = clock
        self._primary_down_until: float | None = None

    @property
    def degraded(self) -> bool:
        return self._primary_down_until is not None

    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        down_until = self._primary_down_until
        if down_until is not None and self._clock() < down_until:
            return await self._fallback.hit(key, limit, window_s)
        try:
            decision = await self._primary.hit(key, limit, window_s)
        except DependencyUnavailable as exc:
            if down_until is None:  # log once per outage, not once per request
                log.warning("rate limiter falls back to in-process counts: %s", exc.message)
            self._primary_down_until = self._clock() + self._retry_after_s
            return await self._fallback.hit(key, limit, window_s)
        if down_until is not None:
            log.info("rate limiter primary is back")
            self._primary_down_until = None
        return decision


def validate_limit(limit: int, window_s: float) -> None:
    if limit < 1 or window_s <= 0:
        raise ValueError(f"a rate limit needs limit >= 1 and window_s > 0, got {limit}/{window_s}")
