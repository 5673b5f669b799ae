from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from gpu_endpoint.batching import BatchPolicy, DynamicBatcher, is_out_of_memory
from shared.errors import DependencyUnavailable

pytestmark = pytest.mark.unit


class FakeRunner:
    """Doubles each item; runs out of memory above ``limit`` items, as a GPU would."""

    def __init__(self, limit: int | None = None, error: Exception | None = None) -> None:
        self.limit = limit
        self.error = error
        self.calls: list[int] = []
        self.released = 0

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(len(items))
        if self.error is not None:
            raise self.error
        if self.limit is not None and len(items) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [2 * item for item in items]

    def release(self) -> None:
        self.released += 1


def policy(
    *,
    min_size: int = 2,
    max_size: int = 64,
    initial_size: int = 16,
    max_wait_ms: float = 20,
    grow_after: int = 100,
) -> BatchPolicy:
    return BatchPolicy(min_size, max_size, initial_size, max_wait_ms, grow_after)


async def test_concurrent_requests_merge_into_fewer_batches() -> None:
    runner = FakeRunner()
    batcher: DynamicBatcher[int, int] = DynamicBatcher(runner, policy())
    requests = [[10 * r, 10 * r + 1] for r in range(20)]

    results = await asyncio.gather(*(batcher.submit(items) for items in requests))

    assert results == [[2 * x for x in items] for items in requests]
    assert runner.calls == [16, 16, 8]  # 40 items from 20 requests in 3 model calls
    assert batcher.batches_run == 3
    assert batcher.items_run == 40
    await batcher.aclose()


async def test_a_request_larger_than_the_batch_is_split_and_reassembled_in_order() -> None:
    runner = FakeRunner()
    batcher: DynamicBatcher[int, int] = DynamicBatcher(runner, policy())

    assert await batcher.submit(list(range(40))) == [2 * x for x in range(40)]
    assert runner.calls == [16, 16, 8]
    await batcher.aclose()


async def test_max_wait_flushes_a_partial_batch() -> None:
    runner = FakeRunner()
    batcher: DynamicBatcher[int, int] = DynamicBatcher(runner, policy(max_wait_ms=30))

    started = time.perf_counter()
    assert await batcher.submit([1, 2, 3]) == [2, 4, 6]

    assert time.perf_counter() - started >= 0.025  # it waited for company, then went alone
    assert runner.calls == [3]
    await batcher.aclose()


async def test_requests_arriving_within_the_wait_share_a_batch() -> None:
    runner = FakeRunner()
    batcher: DynamicBatcher[int, int] = DynamicBatcher(runner, policy(max_wait_ms=200))

    async def later(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return await batcher.submit(items)

    await asyncio.gather(batcher.submit([1]), later([2]), later([3]))
    assert runner.calls == [3]
    await batcher.aclose()


async def test_out_of_memory_halves_the_batch_and_retries_the_items_in_halves() -> None:
    runner = FakeRunner(limit=8)
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        runner, policy(initial_size=32, max_size=32, grow_after=2), on_oom=runner.release
    )

    assert await batcher.submit(list(range(32))) == [2 * x for x in range(32)]

    assert runner.calls == [32, 16, 8, 8, 8, 8]
    assert batcher.batch_size == 8
    assert batcher.oom_events == 2
    assert runner.released == 2  # the CUDA cache is released before each smaller retry
    assert batcher.batches_run == 4


async def test_the_batch_size_recovers_after_full_batches_without_oom() -> None:
    runner = FakeRunner(limit=8)
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        runner, policy(initial_size=32, max_size=32, grow_after=2, max_wait_ms=0)
    )
    await batcher.submit(list(range(32)))
    assert batcher.batch_size == 8

    runner.limit = None  # memory was freed
    await batcher.submit(list(range(8)))
    assert batcher.batch_size == 8  # one full batch is not yet enough
    await batcher.submit(list(range(3)))
    assert batcher.batch_size == 8  # a partial batch proves nothing
    await batcher.submit(list(range(8)))
    assert batcher.batch_size == 16
    await batcher.submit(list(range(32)))  # two full batches of 16
    assert batcher.batch_size == 32
    await batcher.submit(list(range(64)))
    assert batcher.batch_size == 32  # never above max_size
    await batcher.aclose()


async def test_out_of_memory_at_the_minimum_size_fails_the_request() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(
        FakeRunner(limit=1), policy(min_size=2, initial_size=4)
    )
    with pytest.raises(DependencyUnavailable) as caught:
        await batcher.submit([1, 2, 3, 4])
    assert caught.value.code == "out_of_memory"
    assert batcher.batch_size == 2  # halved once, then the minimum itself did not fit
    await batcher.aclose()


async def test_an_error_reaches_every_waiter_and_the_worker_carries_on() -> None:
    runner = FakeRunner(error=ValueError("tokenizer exploded"))
    batcher: DynamicBatcher[int, int] = DynamicBatcher(runner, policy())

    outcomes = await asyncio.gather(
        *(batcher.submit([i]) for i in range(5)), return_exceptions=True
    )

    assert runner.calls == [5]
    assert all(isinstance(o, ValueError) for o in outcomes)
    runner.error = None
    assert await batcher.submit([7]) == [14]
    await batcher.aclose()


async def test_a_cancelled_request_is_dropped_from_the_queue() -> None:
    gate = threading.Event()
    calls: list[list[int]] = []

    def slow(items: list[int]) -> list[int]:
        calls.append(items)
        gate.wait(5)
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(slow, policy(initial_size=2))
    first = asyncio.create_task(batcher.submit([1, 2]))  # fills a batch: runs at once
    await asyncio.sleep(0.01)
    doomed = asyncio.create_task(batcher.submit([3]))
    kept = asyncio.create_task(batcher.submit([4]))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.set()

    assert await first == [1, 2]
    assert await kept == [4]
    assert calls == [[1, 2], [4]]
    await batcher.aclose()


async def test_closing_fails_the_requests_still_waiting() -> None:
    gate = threading.Event()

    def blocked(items: list[int]) -> list[int]:
        gate.wait(5)
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(blocked, policy(initial_size=2))
    running = asyncio.create_task(batcher.submit([1, 2]))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(batcher.submit([3]))
    await asyncio.sleep(0)
    try:
        await batcher.aclose()
    finally:
        gate.set()
    for task in (running, queued):
        with pytest.raises(DependencyUnavailable) as caught:
            await task
        assert caught.value.code == "shutting_down"
    with pytest.raises(DependencyUnavailable):
        await batcher.submit([5])


def test_out_of_memory_errors_are_recognised() -> None:
    class OutOfMemoryError(RuntimeError):  # torch.cuda.OutOfMemoryError, by name
        pass

    assert is_out_of_memory(OutOfMemoryError("Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


@pytest.mark.parametrize(
    "bad",
    [
        {"min_size": 0},
        {"min_size": 20},  # above initial
        {"initial_size": 100},  # above max
        {"max_wait_ms": -1},
        {"grow_after": 0},
    ],
)
def test_policy_bounds_are_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="need"):
        policy(**bad)
