"""The key-value store contract on Redis and in memory, and QueryCache with real Redis as L2."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from shared.adapters.redis_client import create_redis
from shared.adapters.redis_key_value_store import DEFAULT_PREFIX, RedisKeyValueStore
from shared.errors import DependencyUnavailable, InvalidInput
from shared.ports.key_value_store import KeyValueStore
from shared.query.cache import QueryCache, cache_key
from tests.fakes.key_value_store import InMemoryKeyValueStore

pytestmark = pytest.mark.integration

TTLS = {"fast": 3600, "balanced": 1800, "deep": 7200}
RESULT: dict[str, Any] = {"answer": "Quarry caches results", "citations": [{"doc": "d1"}]}
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = create_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def make_cache(
    l2: KeyValueStore, metrics: Any = None, *, promote_after: int = 3, **kwargs: Any
) -> QueryCache:
    return QueryCache(
        l1_max_entries=100,
        l1_ttl_s=300,
        promote_after=promote_after,
        l2_ttl_by_mode=TTLS,
        l2=l2,
        metrics=metrics,
        **kwargs,
    )


class CountingMetrics:
    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def increment(self, name: str, value: float = 1.0, **dimensions: str) -> None:
        label = ",".join(f"{k}={v}" for k, v in sorted(dimensions.items()))
        self.counts[f"{name}{{{label}}}"] = self.counts.get(f"{name}{{{label}}}", 0.0) + value

    def observe_ms(self, name: str, value_ms: float, **dimensions: str) -> None:
        pass

    def set_gauge(self, name: str, value: float, **dimensions: str) -> None:
        pass


# --- the KeyValueStore contract, run against both adapters ------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> KeyValueStore:
    if request.param == "memory":
        return InMemoryKeyValueStore()
    client: Redis = request.getfixturevalue("redis_client")
    return RedisKeyValueStore(client)


async def test_store_round_trips_bytes_with_a_ttl(store: KeyValueStore) -> None:
    assert await store.get("missing") is None
    assert await store.ttl("missing") is None
    await store.set("k", b"\x00binary\xff", ttl_s=60)
    assert await store.get("k") == b"\x00binary\xff"
    remaining = await store.ttl("k")
    assert remaining is not None
    assert 58 <= remaining <= 60
    await store.set("k", b"replaced", ttl_s=5)
    assert await store.get("k") == b"replaced"
    assert (await store.ttl("k") or 0) <= 5


async def test_store_rejects_a_ttl_below_one_second(store: KeyValueStore) -> None:
    with pytest.raises(InvalidInput):
        await store.set("k", b"v", ttl_s=0)


async def test_store_entries_expire(store: KeyValueStore) -> None:
    if isinstance(store, InMemoryKeyValueStore):
        clock = [0.0]
        store = InMemoryKeyValueStore(clock=lambda: clock[0])
        await store.set("k", b"v", ttl_s=1)
        clock[0] = 1.0
    else:
        await store.set("k", b"v", ttl_s=1)
        await asyncio.sleep(1.1)
    assert await store.get("k") is None


async def test_redis_store_prefixes_its_keys(redis_client: Redis) -> None:
    await RedisKeyValueStore(redis_client).set("abc", b"v", ttl_s=60)
    await RedisKeyValueStore(redis_client, prefix="other:").set("abc", b"w", ttl_s=60)
    assert await redis_client.get(f"{DEFAULT_PREFIX}abc") == b"v"
    assert await redis_client.get("other:abc") == b"w"


async def test_redis_store_reports_a_down_redis_as_cache_unavailable() -> None:
    client = create_redis(CLOSED_PORT_URL, timeout_s=0.2)
    try:
        store = RedisKeyValueStore(client)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.get("k"),
            lambda: store.set("k", b"v", 60),
            lambda: store.ttl("k"),
        ]
        for call in calls:
            with pytest.raises(DependencyUnavailable) as info:
                await call()
            assert info.value.code == "cache_unavailable"
    finally:
        await client.aclose()


# --- QueryCache on Redis -----------------------------------------------------------------------


async def test_promotion_writes_to_redis_with_the_mode_ttl(redis_client: Redis) -> None:
    store = RedisKeyValueStore(redis_client)
    cache = make_cache(store, promote_after=3)
    key = cache_key("t1", "kb1", 3, "deep", "How does  Quarry cache?", {"top_k": 15})
    await cache.put(key, "deep", RESULT)
    await cache.get(key, "deep")
    assert await store.get(key) is None  # two accesses: still L1 only
    await cache.get(key, "deep")
    remaining = await store.ttl(key)
    assert remaining is not None
    assert TTLS["deep"] - 5 <= remaining <= TTLS["deep"]
    assert await redis_client.exists(f"{DEFAULT_PREFIX}{key}") == 1


async def test_a_second_cache_on_the_same_redis_gets_an_l2_hit(redis_client: Redis) -> None:
    key = cache_key("t1", "kb1", 3, "fast", "what is quarry", {})
    first = make_cache(RedisKeyValueStore(redis_client), promote_after=1)
    await first.put(key, "fast", RESULT)
    second = make_cache(RedisKeyValueStore(redis_client))  # another process: empty L1
    lookup = await second.get(key, "fast")
    assert (lookup.level, lookup.value) == ("l2", RESULT)
    assert (await second.get(key, "fast")).level == "l1"
    new_version = cache_key("t1", "kb1", 4, "fast", "what is quarry", {})  # the KB changed
    assert (await second.get(new_version, "fast")).level is None


@pytest.fixture
async def hung_redis_url() -> AsyncIterator[str]:
    """A server that accepts connections and never replies: a Redis that hangs."""

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    finally:
        server.close()


@pytest.fixture(params=["down", "hung"])
def failing_redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "down":
        return CLOSED_PORT_URL
    return str(request.getfixturevalue("hung_redis_url"))


async def test_a_down_or_slow_redis_fails_open_and_counts_errors(failing_redis_url: str) -> None:
    client = create_redis(failing_redis_url, timeout_s=0.2)
    metrics = CountingMetrics()
    cache = make_cache(RedisKeyValueStore(client), metrics, promote_after=1, l2_timeout_s=0.05)
    try:
        started = time.perf_counter()
        assert (await cache.get("k", "fast")).level is None
        await cache.put("k", "fast", RESULT)  # the promotion write fails: no exception
        assert (await cache.get("k", "fast")).level == "l1"
        assert time.perf_counter() - started < 1.0  # bounded by l2_timeout_s, not by retries
    finally:
        await client.aclose()
    assert metrics.counts["cache_errors{operation=get}"] == 1
    assert metrics.counts["cache_errors{operation=set}"] == 1
    assert cache.stats()["errors"] == 2
