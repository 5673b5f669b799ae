"""The rate limiter on Redis: a sliding-window log per key in a sorted set, in one Lua script.

The script drops entries older than the window, counts the rest, and adds this request only when
under the limit, atomically, so concurrent instances never over-admit. Scores are milliseconds
of this process's clock (instances are NTP-synchronised; skew of a few ms only shifts windows by
as much). The key expires one window after its last accepted request. Redis and socket errors
become ``DependencyUnavailable`` (``rate_limiter_unavailable``).
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.auth.rate_limit import RateDecision, validate_limit
from shared.errors import DependencyUnavailable

DEFAULT_PREFIX = "quarry:rl:"
RATE_LIMITER_UNAVAILABLE = "rate_limiter_unavailable"

# KEYS[1]: the log; ARGV: now (ms), window (ms), limit, a unique member for this request.
# Returns {allowed (0/1), remaining, retry after (ms)}.
SLIDING_WINDOW_LUA = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""


class RedisRateLimiter:
    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._script: Any = client.register_script(SLIDING_WINDOW_LUA)
        # Members must be unique within a key even for requests in the same millisecond.
        self._instance = secrets.token_hex(4)
        self._sequence = itertools.count()

    async def hit(self, key: str, limit: int, window_s: float) -> RateDecision:
        validate_limit(limit, window_s)
        now_ms = int(self._clock() * 1000)
        window_ms = max(1, math.ceil(window_s * 1000))
        member = f"{now_ms}:{self._instance}:{next(self._sequence)}"
        try:
            allowed, remaining, retry_ms = await self._script(
                keys=[self._prefix + key], args=[now_ms, window_ms, limit, member]
            )
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable(
                f"Redis rate limit failed: {type(exc).__name__}: {exc}",
                code=RATE_LIMITER_UNAVAILABLE,
            ) from exc
        return RateDecision(bool(allowed), int(remaining), max(0, int(retry_ms)) / 1000)
