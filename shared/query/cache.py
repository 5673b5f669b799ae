"""The two-level query cache: an in-process LRU (L1) in front of a shared key-value store (L2).

Keys come from ``cache_key``: a hash of the tenant, KB, KB version, mode, normalised query and
options. Every KB change bumps its version, so a stale entry is never looked up again and simply
ages out; nothing is ever deleted explicitly.

Promotion: an entry's accesses are counted from its ``put`` (access 1); each L1 hit adds one. When
the count reaches ``promote_after`` the entry is written to L2 with its mode's TTL, once per L1
entry, so that only results asked for repeatedly cost a Redis write. An entry filled from L2 is
already there and is never written back.

The cache is an optimisation: an L2 error or timeout counts as a miss (or a skipped write), is
counted in ``cache_errors`` and logged at most once per ``WARN_INTERVAL_S``; callers never see it.
Asyncio only: all state changes happen between awaits on one event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from uuid import UUID

from shared.errors import InvalidInput
from shared.observability.metrics import MetricsSink
from shared.ports.key_value_store import KeyValueStore
from shared.settings import CacheSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Outcome = Literal["hit_l1", "hit_l2", "miss"]
Level = Literal["l1", "l2"]
KEY_SCHEMA_VERSION = 1  # bump when the cached value's shape changes: old keys then never match
WARN_INTERVAL_S = 30.0  # at most one L2 warning per interval; a down Redis must not flood logs
DEFAULT_L2_TIMEOUT_S = 0.1  # a slower L2 answer is worth less than recomputing within budget


def normalize_query(query: str) -> str:
    """NFKC, case-folded, whitespace collapsed and trimmed: ``"  Hello   WORLD "`` -> ``"hello
    world"``. NFKC runs again after case folding, which can leave text un-normalised."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", query).casefold())
    return " ".join(folded.split())


def cache_key(
    tenant_id: str | UUID,
    kb_id: str | UUID,
    kb_version: int,
    mode: str,
    query: str,
    options: Mapping[str, Any],
) -> str:
    """The SHA-256 hex digest of a canonical JSON of every input that shapes a query's result."""
    parts = {
        "v": KEY_SCHEMA_VERSION,
        "tenant": str(tenant_id),
        "kb": str(kb_id),
        "kb_version": kb_version,
        "mode": mode,
        "query": normalize_query(query),
        "options": dict(options),
    }
    # default=str: an option that is not JSON (a UUID, a date) still makes a key; building a key
    # must never fail a query.
    canonical = json.dumps(
        parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheLookup:
    value: dict[str, Any] | None
    level: Level | None

    @property
    def hit(self) -> bool:
        return self.value is not None


@dataclass(slots=True)
class _Entry:
    # JSON bytes, not the dict: each hit decodes a fresh copy, so a caller mutating its result
    # cannot corrupt the cache, and promotion writes these bytes to L2 as they are.
    payload: bytes
    expires_at: float
    accesses: int
    promoted: bool


@dataclass(slots=True)
class _Counts:
    hit_l1: int = 0
    hit_l2: int = 0
    miss: int = 0
    l2_lookups: int = 0  # L1 misses that asked L2 (zero without an L2)

    def bump(self, outcome: Outcome, *, asked_l2: bool) -> None:
        if outcome == "hit_l1":
            self.hit_l1 += 1
        elif outcome == "hit_l2":
            self.hit_l2 += 1
        else:
            self.miss += 1
        if asked_l2:
            self.l2_lookups += 1

    def add(self, other: _Counts) -> None:
        self.hit_l1 += other.hit_l1
        self.hit_l2 += other.hit_l2
        self.miss += other.miss
        self.l2_lookups += other.l2_lookups

    def summary(self) -> dict[str, Any]:
        lookups = self.hit_l1 + self.hit_l2 + self.miss
        hits = self.hit_l1 + self.hit_l2
        return {
            "lookups": lookups,
            **_rate(hits, lookups),
            "l1": _rate(self.hit_l1, lookups),
            "l2": _rate(self.hit_l2, self.l2_lookups),
        }


def _rate(hits: int, lookups: int) -> dict[str, Any]:
    return {"hits": hits, "misses": lookups - hits, "hit_rate": hits / lookups if lookups else 0.0}


class QueryCache:
    def __init__(
        self,
        l1_max_entries: int,
        l1_ttl_s: float,
        promote_after: int,
        l2_ttl_by_mode: Mapping[str, int],
        l2: KeyValueStore | None,
        metrics: MetricsSink | None,
        clock: Callable[[], float] = time.monotonic,
        *,
        l2_timeout_s: float | None = DEFAULT_L2_TIMEOUT_S,
    ) -> None:
        """``l2_ttl_by_mode`` names the valid modes. ``l2_timeout_s`` bounds each L2 call on top
        of the client's own timeouts and retries (None: no bound of the cache's own)."""
        if l1_max_entries < 1 or l1_ttl_s <= 0 or promote_after < 1:
            raise InvalidInput("l1_max_entries, l1_ttl_s and promote_after must be positive")
        if not l2_ttl_by_mode or min(l2_ttl_by_mode.values()) < 1:
            raise InvalidInput("l2_ttl_by_mode needs at least one mode, each with a TTL >= 1 s")
        self._max_entries = l1_max_entries
        self._l1_ttl_s = l1_ttl_s
        self._promote_after = promote_after
        self._l2_ttls = dict(l2_ttl_by_mode)
        self._l2 = l2
        self._metrics = metrics
        self._clock = clock
        self._l2_timeout_s = l2_timeout_s
        self._l1: OrderedDict[str, _Entry] = OrderedDict()
        self._counts: dict[str, _Counts] = {}
        self._errors = 0
        self._last_warning_at: float | None = None
        self._suppressed_warnings = 0

    @classmethod
    def from_settings(
        cls, settings: CacheSettings, l2: KeyValueStore | None, metrics: MetricsSink | None
    ) -> QueryCache:
        return cls(
            l1_max_entries=settings.l1_max_entries,
            l1_ttl_s=settings.l1_ttl_s,
            promote_after=settings.l2_promote_after_hits,
            l2_ttl_by_mode={
                "fast": settings.ttl_fast_s,
                "balanced": settings.ttl_balanced_s,
                "deep": settings.ttl_deep_s,
            },
            l2=l2,
            metrics=metrics,
        )

    async def get(self, key: str, mode: str) -> CacheLookup:
        ttl_s = self._l2_ttl(mode)
        entry = self._live_entry(key)
        if entry is not None:
            self._l1.move_to_end(key)
            entry.accesses += 1
            self._record(mode, "hit_l1")
            await self._maybe_promote(key, entry, ttl_s)
            return CacheLookup(json.loads(entry.payload), "l1")
        if self._l2 is None:
            self._record(mode, "miss")
            return CacheLookup(None, None)
        found = await self._l2_get(self._l2, key)
        if found is None:
            self._record(mode, "miss", asked_l2=True)
            return CacheLookup(None, None)
        value, payload = found
        # Another task may have put the key while we awaited L2; its entry (and count) wins.
        if self._live_entry(key) is None:
            self._insert(key, _Entry(payload, self._expiry(), accesses=1, promoted=True))
        self._record(mode, "hit_l2", asked_l2=True)
        return CacheLookup(value, "l2")

    async def put(self, key: str, mode: str, value: dict[str, Any]) -> None:
        """Cache ``value`` (JSON-serialisable; ``TypeError`` otherwise: a caller bug)."""
        ttl_s = self._l2_ttl(mode)
        payload = _encode(value)
        entry = self._live_entry(key)
        if entry is not None:
            # Same key, same inputs: a concurrent recomputation. It counts as one more access.
            entry.payload, entry.expires_at = payload, self._expiry()
            entry.accesses += 1
            self._l1.move_to_end(key)
        else:
            entry = _Entry(payload, self._expiry(), accesses=1, promoted=False)
            self._insert(key, entry)
        await self._maybe_promote(key, entry, ttl_s)

    def stats(self) -> dict[str, Any]:
        """Hits, misses and hit rates overall and per mode, each also per level (L2's rate is over
        the lookups that reached L2), for ``GET /v1/stats/cache``."""
        overall = _Counts()
        for counts in self._counts.values():
            overall.add(counts)
        return {
            "overall": overall.summary(),
            "modes": {mode: counts.summary() for mode, counts in sorted(self._counts.items())},
            "l1_entries": len(self._l1),
            "l1_max_entries": self._max_entries,
            "l2_enabled": self._l2 is not None,
            "errors": self._errors,
        }

    def _l2_ttl(self, mode: str) -> int:
        ttl_s = self._l2_ttls.get(mode)
        if ttl_s is None:
            raise InvalidInput(f"unknown query mode {mode!r}", code="invalid_mode")
        return ttl_s

    def _live_entry(self, key: str) -> _Entry | None:
        entry = self._l1.get(key)
        if entry is not None and entry.expires_at <= self._clock():
            del self._l1[key]
            return None
        return entry

    def _expiry(self) -> float:
        return self._clock() + self._l1_ttl_s

    def _insert(self, key: str, entry: _Entry) -> None:
        self._l1[key] = entry
        self._l1.move_to_end(key)
        while len(self._l1) > self._max_entries:
            self._l1.popitem(last=False)  # least recently used first

    async def _maybe_promote(self, key: str, entry: _Entry, ttl_s: int) -> None:
        if self._l2 is None or entry.promoted or entry.accesses < self._promote_after:
            return
        # Marked before the await so that a concurrent hit cannot write it a second time; a failed
        # write is not retried (L2 is best effort, and the entry is re-put after L1 expiry anyway).
        entry.promoted = True
        await self._l2_call("set", self._l2.set(key, entry.payload, ttl_s))

    async def _l2_get(self, l2: KeyValueStore, key: str) -> tuple[dict[str, Any], bytes] | None:
        """The decoded value and its bytes (kept as L1's copy: no re-encoding on an L2 hit)."""
        payload = await self._l2_call("get", l2.get(key))
        if payload is None:
            return None
        try:
            value = json.loads(payload)
        except ValueError as exc:
            self._l2_failed("decode", exc)
            return None
        if not isinstance(value, dict):
            self._l2_failed("decode", TypeError(f"cached value is a {type(value).__name__}"))
            return None
        return value, payload

    async def _l2_call(self, operation: str, call: Awaitable[T]) -> T | None:
        try:
            async with asyncio.timeout(self._l2_timeout_s):
                return await call
        # Any failure, not only DependencyUnavailable and timeouts: no cache error may fail a query.
        except Exception as exc:
            self._l2_failed(operation, exc)
            return None

    def _l2_failed(self, operation: str, exc: BaseException) -> None:
        self._errors += 1
        if self._metrics is not None:
            self._metrics.increment("cache_errors", operation=operation)
        now = self._clock()
        if self._last_warning_at is not None and now - self._last_warning_at < WARN_INTERVAL_S:
            self._suppressed_warnings += 1
            return
        log.warning(
            "query cache L2 %s failed, serving without L2: %r (%d similar errors suppressed)",
            operation,
            exc,
            self._suppressed_warnings,
        )
        self._last_warning_at = now
        self._suppressed_warnings = 0

    def _record(self, mode: str, outcome: Outcome, *, asked_l2: bool = False) -> None:
        counts = self._counts.setdefault(mode, _Counts())
        counts.bump(outcome, asked_l2=asked_l2)
        if self._metrics is not None:
            self._metrics.increment("cache_lookups", mode=mode, outcome=outcome)
            hits = counts.hit_l1 + counts.hit_l2
            self._metrics.set_gauge("cache_hit_rate", hits / (hits + counts.miss), mode=mode)


def _encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
