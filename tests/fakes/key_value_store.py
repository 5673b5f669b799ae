"""An in-memory ``KeyValueStore`` with a clock for expiry and switches for failure and latency."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from shared.errors import DependencyUnavailable, InvalidInput
from shared.ports.key_value_store import CACHE_UNAVAILABLE


class InMemoryKeyValueStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, tuple[bytes, float]] = {}  # key -> (value, expires_at)
        self._failing = False
        self._latency_s = 0.0
        self.set_calls: list[tuple[str, int]] = []  # (key, ttl_s) of each successful set

    def simulate_failure(self, failing: bool = True) -> None:
        """While on, every call raises ``DependencyUnavailable`` as a down Redis would."""
        self._failing = failing

    def simulate_latency(self, seconds: float) -> None:
        """Every call first sleeps this long (a slow Redis); 0 turns it off."""
        self._latency_s = seconds

    async def get(self, key: str) -> bytes | None:
        await self._enter("get")
        item = self._live(key)
        return item[0] if item else None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if ttl_s < 1:
            raise InvalidInput(f"ttl_s must be >= 1, got {ttl_s}", code="invalid_ttl")
        await self._enter("set")
        self._data[key] = (bytes(value), self._clock() + ttl_s)
        self.set_calls.append((key, ttl_s))

    async def ttl(self, key: str) -> int | None:
        await self._enter("ttl")
        item = self._live(key)
        return math.ceil(item[1] - self._clock()) if item else None

    def _live(self, key: str) -> tuple[bytes, float] | None:
        item = self._data.get(key)
        if item is not None and item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    async def _enter(self, operation: str) -> None:
        if self._latency_s > 0:
            await asyncio.sleep(self._latency_s)
        if self._failing:
            raise DependencyUnavailable(
                f"simulated {operation} failure",
                code=CACHE_UNAVAILABLE,
                details={"operation": operation},
            )
