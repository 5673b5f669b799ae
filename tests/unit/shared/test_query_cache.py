"""QueryCache and cache_key on a fake clock, with the in-memory key-value store as L2."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from shared.errors import InvalidInput
from shared.query.cache import WARN_INTERVAL_S, QueryCache, cache_key, normalize_query
from shared.settings import CacheSettings
from tests.fakes.key_value_store import InMemoryKeyValueStore

pytestmark = pytest.mark.unit

TTLS = {"fast": 3600, "balanced": 1800, "deep": 7200}
RESULT: dict[str, Any] = {"answer": "42", "citations": [{"doc": "d1", "score": 0.9}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingMetrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def increment(self, name: str, value: float = 1.0, **dimensions: str) -> None:
        key = (name, tuple(sorted(dimensions.items())))
        self.counters[key] = self.counters.get(key, 0.0) + value

    def observe_ms(self, name: str, value_ms: float, **dimensions: str) -> None:
        raise AssertionError("the cache records no latencies")

    def set_gauge(self, name: str, value: float, **dimensions: str) -> None:
        self.gauges[(name, tuple(sorted(dimensions.items())))] = value

    def count(self, name: str, **dimensions: str) -> float:
        return self.counters.get((name, tuple(sorted(dimensions.items()))), 0.0)

    def gauge(self, name: str, **dimensions: str) -> float | None:
        return self.gauges.get((name, tuple(sorted(dimensions.items()))))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kv(clock: FakeClock) -> InMemoryKeyValueStore:
    return InMemoryKeyValueStore(clock=clock)


@pytest.fixture
def metrics() -> RecordingMetrics:
    return RecordingMetrics()


def make_cache(
    clock: FakeClock,
    l2: InMemoryKeyValueStore | None = None,
    metrics: RecordingMetrics | None = None,
    *,
    max_entries: int = 100,
    l1_ttl_s: float = 300,
    promote_after: int = 3,
    ttls: Mapping[str, int] = TTLS,
    l2_timeout_s: float | None = 0.5,
) -> QueryCache:
    return QueryCache(
        l1_max_entries=max_entries,
        l1_ttl_s=l1_ttl_s,
        promote_after=promote_after,
        l2_ttl_by_mode=ttls,
        l2=l2,
        metrics=metrics,
        clock=clock,
        l2_timeout_s=l2_timeout_s,
    )


def key(query: str = "what is quarry", **changes: Any) -> str:
    parts: dict[str, Any] = {
        "tenant_id": "t1",
        "kb_id": "kb1",
        "kb_version": 7,
        "mode": "fast",
        "query": query,
        "options": {"top_k": 5, "filters": {"lang": "en"}},
    }
    parts.update(changes)
    return cache_key(**parts)


# --- cache_key ---------------------------------------------------------------------------------


def test_key_normalises_case_whitespace_and_unicode_forms() -> None:
    assert key("  Hello   WORLD ") == key("hello world")
    assert key("hello\t\nworld\u3000") == key("hello world")
    fullwidth = "\uff28\uff25\uff2c\uff2c\uff2f \uff57\uff4f\uff52\uff4c\uff44"
    assert key(fullwidth) == key("hello world")  # fullwidth forms: NFKC folds them
    assert key("STRASSE") == key("straße")  # case folding, not just lower()
    assert normalize_query("  Hello   WORLD ") == "hello world"


def test_key_is_a_sha256_hex_digest_and_ignores_option_order() -> None:
    k = key(options={"top_k": 5, "filters": {"lang": "en", "year": 2024}})
    assert len(k) == 64
    assert int(k, 16) >= 0
    assert k == key(options={"filters": {"year": 2024, "lang": "en"}, "top_k": 5})


def test_uuid_ids_and_non_json_options_make_keys() -> None:
    tenant = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert key(tenant_id=tenant) == key(tenant_id=str(tenant))
    day = {"since": datetime.date(2024, 1, 31)}
    assert key(options=day) == key(options={"since": "2024-01-31"})


@pytest.mark.parametrize(
    "change",
    [
        {"kb_version": 8},
        {"mode": "deep"},
        {"options": {"top_k": 6, "filters": {"lang": "en"}}},
        {"options": {"top_k": 5}},
        {"tenant_id": "t2"},
        {"kb_id": "kb2"},
        {"query": "what is quarry?"},
    ],
)
def test_every_input_that_shapes_the_result_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


# --- L1 -------------------------------------------------------------------------------------------


async def test_put_then_get_is_an_l1_hit_and_returns_a_private_copy(clock: FakeClock) -> None:
    cache = make_cache(clock)
    assert (await cache.get("k", "fast")).level is None
    await cache.put("k", "fast", RESULT)
    first = await cache.get("k", "fast")
    assert first.hit
    assert (first.level, first.value) == ("l1", RESULT)
    assert first.value is not None
    first.value["answer"] = "mutated by the caller"
    assert (await cache.get("k", "fast")).value == RESULT


async def test_l1_evicts_the_least_recently_used_entry(clock: FakeClock) -> None:
    cache = make_cache(clock, max_entries=2)
    await cache.put("a", "fast", {"v": "a"})
    await cache.put("b", "fast", {"v": "b"})
    assert (await cache.get("a", "fast")).hit  # a is now the most recently used
    await cache.put("c", "fast", {"v": "c"})
    assert (await cache.get("b", "fast")).value is None
    assert (await cache.get("a", "fast")).value == {"v": "a"}
    assert (await cache.get("c", "fast")).value == {"v": "c"}
    assert cache.stats()["l1_entries"] == 2


async def test_l1_entries_expire_after_their_ttl(clock: FakeClock) -> None:
    cache = make_cache(clock, l1_ttl_s=10)
    await cache.put("k", "fast", RESULT)
    clock.advance(9.9)
    assert (await cache.get("k", "fast")).hit  # a hit does not extend the lifetime
    clock.advance(0.1)
    assert not (await cache.get("k", "fast")).hit
    assert cache.stats()["l1_entries"] == 0


async def test_unknown_mode_is_rejected(clock: FakeClock) -> None:
    cache = make_cache(clock)
    with pytest.raises(InvalidInput) as info:
        await cache.get("k", "turbo")
    assert info.value.code == "invalid_mode"
    with pytest.raises(InvalidInput):
        await cache.put("k", "turbo", RESULT)


@pytest.mark.parametrize(
    "changes",
    [{"max_entries": 0}, {"l1_ttl_s": 0}, {"promote_after": 0}, {"ttls": {}}, {"ttls": {"f": 0}}],
)
def test_invalid_configuration_is_rejected(clock: FakeClock, changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        make_cache(clock, **changes)


# --- promotion to L2 ---------------------------------------------------------------------------


@pytest.mark.parametrize("promote_after", [1, 2, 3, 5])
async def test_promotion_happens_at_exactly_n_accesses_and_only_once(
    clock: FakeClock, kv: InMemoryKeyValueStore, promote_after: int
) -> None:
    cache = make_cache(clock, kv, promote_after=promote_after)
    await cache.put("k", "balanced", RESULT)  # access 1
    for access in range(2, promote_after + 1):
        assert kv.set_calls == [], f"written before access {access}"
        assert (await cache.get("k", "balanced")).level == "l1"
    assert kv.set_calls == [("k", TTLS["balanced"])]
    for _ in range(5):
        await cache.get("k", "balanced")
    await cache.put("k", "balanced", RESULT)
    assert len(kv.set_calls) == 1


async def test_promotion_uses_the_mode_ttl(clock: FakeClock, kv: InMemoryKeyValueStore) -> None:
    cache = make_cache(clock, kv, promote_after=1)
    for mode in TTLS:
        await cache.put(f"k-{mode}", mode, RESULT)
        assert await kv.ttl(f"k-{mode}") == TTLS[mode]


async def test_an_expired_l1_entry_starts_counting_afresh(
    clock: FakeClock, kv: InMemoryKeyValueStore
) -> None:
    cache = make_cache(clock, kv, l1_ttl_s=10, promote_after=3)
    await cache.put("k", "fast", RESULT)
    await cache.get("k", "fast")
    clock.advance(10)
    await cache.put("k", "fast", RESULT)
    await cache.get("k", "fast")
    assert kv.set_calls == []
    await cache.get("k", "fast")
    assert len(kv.set_calls) == 1


async def test_an_l2_hit_fills_l1_and_is_not_written_back(
    clock: FakeClock, kv: InMemoryKeyValueStore
) -> None:
    writer = make_cache(clock, kv, promote_after=1)
    await writer.put("k", "deep", RESULT)
    reader = make_cache(clock, kv, promote_after=1)  # another process: same L2, empty L1
    hit = await reader.get("k", "deep")
    assert (hit.level, hit.value) == ("l2", RESULT)
    kv.simulate_failure(True)  # from here on only L1 can answer
    again = await reader.get("k", "deep")
    assert (again.level, again.value) == ("l1", RESULT)
    assert len(kv.set_calls) == 1
    assert reader.stats()["errors"] == 0


async def test_without_l2_nothing_is_promoted_and_misses_stay_in_l1(clock: FakeClock) -> None:
    cache = make_cache(clock, None, promote_after=1)
    await cache.put("k", "fast", RESULT)
    assert (await cache.get("k", "fast")).level == "l1"
    assert (await cache.get("other", "fast")).level is None
    stats = cache.stats()
    assert stats["l2_enabled"] is False
    assert stats["overall"]["l2"] == {"hits": 0, "misses": 0, "hit_rate": 0.0}


# --- failing open ------------------------------------------------------------------------------


async def test_a_failing_l2_is_a_miss_and_a_skipped_write(
    clock: FakeClock, kv: InMemoryKeyValueStore, metrics: RecordingMetrics
) -> None:
    cache = make_cache(clock, kv, metrics, promote_after=1)
    kv.simulate_failure(True)
    for _ in range(3):
        lookup = await cache.get("k", "fast")
        assert (lookup.value, lookup.level) == (None, None)
    await cache.put("k", "fast", RESULT)  # promotion write fails: no exception
    assert (await cache.get("k", "fast")).level == "l1"
    assert metrics.count("cache_errors", operation="get") == 3
    assert metrics.count("cache_errors", operation="set") == 1
    assert cache.stats()["errors"] == 4
    kv.simulate_failure(False)
    assert kv.set_calls == []  # the failed promotion is not retried


async def test_a_slow_l2_times_out_into_a_miss(
    clock: FakeClock, kv: InMemoryKeyValueStore, metrics: RecordingMetrics
) -> None:
    writer = make_cache(clock, kv, promote_after=1)
    await writer.put("k", "fast", RESULT)
    kv.simulate_latency(0.5)
    cache = make_cache(clock, kv, metrics, l2_timeout_s=0.01)
    assert (await cache.get("k", "fast")).value is None
    assert metrics.count("cache_errors", operation="get") == 1


async def test_a_corrupt_l2_value_is_a_miss(
    clock: FakeClock, kv: InMemoryKeyValueStore, metrics: RecordingMetrics
) -> None:
    await kv.set("bad-json", b"{not json", 60)
    await kv.set("not-a-dict", b"[1, 2]", 60)
    cache = make_cache(clock, kv, metrics)
    assert (await cache.get("bad-json", "fast")).value is None
    assert (await cache.get("not-a-dict", "fast")).value is None
    assert metrics.count("cache_errors", operation="decode") == 2


async def test_l2_warnings_are_rate_limited(
    clock: FakeClock, kv: InMemoryKeyValueStore, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(clock, kv)
    kv.simulate_failure(True)
    with caplog.at_level(logging.WARNING, logger="shared.query.cache"):
        for _ in range(5):
            await cache.get("k", "fast")
            clock.advance(1)
        assert len(caplog.records) == 1
        clock.advance(WARN_INTERVAL_S)
        await cache.get("k", "fast")
    assert len(caplog.records) == 2
    assert "4 similar errors suppressed" in caplog.records[1].getMessage()


# --- accounting --------------------------------------------------------------------------------


async def test_stats_and_metrics_per_level_and_mode(
    clock: FakeClock, kv: InMemoryKeyValueStore, metrics: RecordingMetrics
) -> None:
    cache = make_cache(clock, kv, metrics, promote_after=1)
    await cache.put("a", "fast", RESULT)
    await cache.get("a", "fast")  # hit_l1
    await cache.get("a", "fast")  # hit_l1
    await cache.get("missing", "fast")  # miss (L1 and L2)
    await make_cache(clock, kv, promote_after=1).put("b", "deep", RESULT)
    await cache.get("b", "deep")  # hit_l2
    await cache.get("nope", "deep")  # miss

    stats = cache.stats()
    assert stats["overall"] == {
        "lookups": 5,
        "hits": 3,
        "misses": 2,
        "hit_rate": 0.6,
        "l1": {"hits": 2, "misses": 3, "hit_rate": 0.4},
        "l2": {"hits": 1, "misses": 2, "hit_rate": pytest.approx(1 / 3)},
    }
    fast = stats["modes"]["fast"]
    assert (fast["hits"], fast["misses"], fast["hit_rate"]) == (2, 1, pytest.approx(2 / 3))
    assert fast["l2"] == {"hits": 0, "misses": 1, "hit_rate": 0.0}
    deep = stats["modes"]["deep"]
    assert (deep["l1"]["hits"], deep["l2"]["hits"], deep["hit_rate"]) == (0, 1, 0.5)
    assert "balanced" not in stats["modes"]

    assert metrics.count("cache_lookups", mode="fast", outcome="hit_l1") == 2
    assert metrics.count("cache_lookups", mode="fast", outcome="miss") == 1
    assert metrics.count("cache_lookups", mode="deep", outcome="hit_l2") == 1
    assert metrics.count("cache_lookups", mode="deep", outcome="miss") == 1
    assert metrics.gauge("cache_hit_rate", mode="fast") == pytest.approx(2 / 3)
    assert metrics.gauge("cache_hit_rate", mode="deep") == 0.5


def test_from_settings_maps_the_cache_settings() -> None:
    settings = CacheSettings(l1_max_entries=2, l2_promote_after_hits=1, ttl_deep_s=99)
    cache = QueryCache.from_settings(settings, l2=None, metrics=None)
    stats = cache.stats()
    assert (stats["l1_max_entries"], stats["l2_enabled"]) == (2, False)


async def test_from_settings_uses_the_mode_ttls(kv: InMemoryKeyValueStore) -> None:
    settings = CacheSettings(l2_promote_after_hits=1, ttl_fast_s=11, ttl_deep_s=99)
    cache = QueryCache.from_settings(settings, l2=kv, metrics=None)
    await cache.put("f", "fast", RESULT)
    await cache.put("d", "deep", RESULT)
    await cache.put("b", "balanced", RESULT)
    assert kv.set_calls == [("f", 11), ("d", 99), ("b", 1800)]
