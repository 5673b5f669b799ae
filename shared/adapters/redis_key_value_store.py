"""The key-value store on Redis: one string key per entry, expiry by Redis itself (``SET EX``).

Every key gets ``prefix`` so that the cache shares a Redis (e.g. with rate limits) without
collisions. Redis and socket errors become ``DependencyUnavailable`` (``cache_unavailable``).
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.errors import DependencyUnavailable, InvalidInput
from shared.ports.key_value_store import CACHE_UNAVAILABLE

DEFAULT_PREFIX = "quarry:cache:"


class RedisKeyValueStore:
    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        try:
            value: bytes | str | None = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise _unavailable("get", exc) from exc
        # A client built with decode_responses=True hands back str; the port speaks bytes.
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if ttl_s < 1:
            raise InvalidInput(f"ttl_s must be >= 1, got {ttl_s}", code="invalid_ttl")
        try:
            await self._client.set(self._prefix + key, value, ex=ttl_s)
        except (RedisError, OSError) as exc:
            raise _unavailable("set", exc) from exc

    async def ttl(self, key: str) -> int | None:
        try:
            remaining: int = await self._client.ttl(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise _unavailable("ttl", exc) from exc
        # Redis answers -2 for a missing key and -1 for a key without expiry.
        return remaining if remaining >= 0 else None


def _unavailable(operation: str, exc: BaseException) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"Redis {operation} failed: {type(exc).__name__}: {exc}",
        code=CACHE_UNAVAILABLE,
        details={"operation": operation},
    )
