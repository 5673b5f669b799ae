"""The key-value store port: opaque bytes under a string key, each with a lifetime.

It backs the L2 query cache. Adapters report any failure of the backing service as
``DependencyUnavailable`` (code ``cache_unavailable``) so that callers can fail open on one error
type without knowing the technology behind the port.
"""

from __future__ import annotations

from typing import Protocol

CACHE_UNAVAILABLE = "cache_unavailable"


class KeyValueStore(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The bytes under ``key``; None when there are none or they have expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds (>= 1), replacing what was there."""
        ...

    async def ttl(self, key: str) -> int | None:
        """Seconds ``key`` has left; None when it is missing or never expires (inspection only)."""
        ...
