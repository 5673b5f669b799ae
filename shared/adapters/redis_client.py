"""The one Redis connection of a process (L2 cache, rate limits)."""

from __future__ import annotations

from redis.asyncio import Redis


def create_redis(url: str, *, timeout_s: float = 1.0) -> Redis:
    # Short timeouts: every Redis use fails open, so a slow Redis must not stall requests.
    return Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
    )


async def ping_redis(client: Redis) -> None:
    await client.ping()
