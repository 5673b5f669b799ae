"""Dynamic micro-batching: concurrent requests share one model call.

Each request's items join one queue. A single worker per model takes items until the batch is
full or the oldest waiting item has waited ``max_wait_ms``, runs the batch off the event loop and
hands each request its slice of the results. A request larger than the batch is split across
batches. One worker per model because a GPU (or a CPU's cores under torch) runs one forward pass
well at a time; more would only fight over the same device.

The batch size adapts to memory: an out-of-memory error halves it (never below ``min_size``) and
the failed batch is retried in halves; after ``grow_after`` full batches without one it doubles
again, up to ``max_size``. Only full batches count towards growth: a partial batch says nothing
about whether a larger one would fit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shared.errors import DependencyUnavailable

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError (a RuntimeError) or a RuntimeError saying so (older torch,
    cuDNN and cuBLAS report allocation failures that way). Checked by name: no torch import."""
    if type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class BatchPolicy:
    min_size: int
    max_size: int
    initial_size: int
    max_wait_ms: float
    grow_after: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.initial_size <= self.max_size:
            raise ValueError("need 1 <= min_size <= initial_size <= max_size")
        if self.max_wait_ms < 0 or self.grow_after < 1:
            raise ValueError("need max_wait_ms >= 0 and grow_after >= 1")


@dataclass
class _Request(Generic[T, R]):
    items: Sequence[T]
    future: asyncio.Future[list[R]]

    def __post_init__(self) -> None:
        self.results: list[Any] = [None] * len(self.items)
        self.remaining = len(self.items)

    def fill(self, start: int, values: Sequence[R]) -> None:
        if self.future.done():
            return
        self.results[start : start + len(values)] = values
        self.remaining -= len(values)
        if self.remaining == 0:
            self.future.set_result(self.results)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class _Slice(Generic[T, R]):
    request: _Request[T, R]
    start: int
    stop: int
    enqueued_at: float


class DynamicBatcher(Generic[T, R]):
    """``run_batch`` is blocking (a model call); it must return one result per item, in order."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Iterable[R]],
        policy: BatchPolicy,
        *,
        name: str = "batcher",
        on_oom: Callable[[], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._policy = policy
        self._name = name
        self._on_oom = on_oom
        self._size = policy.initial_size
        self._full_batches = 0
        self._queue: deque[_Slice[T, R]] = deque()
        self._queued = 0
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_run = 0
        self.items_run = 0
        self.oom_events = 0

    @property
    def batch_size(self) -> int:
        return self._size

    def stats(self) -> dict[str, int]:
        return {
            "batch_size": self._size,
            "batches_run": self.batches_run,
            "items_run": self.items_run,
            "oom_events": self.oom_events,
            "queued": self._queued,
        }

    async def submit(self, items: Sequence[T]) -> list[R]:
        if not items:
            return []
        if self._closed:
            raise DependencyUnavailable(f"{self._name} is shutting down", code="shutting_down")
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._worker = loop.create_task(self._work(), name=f"{self._name}-worker")
        request: _Request[T, R] = _Request(items, loop.create_future())
        self._queue.append(_Slice(request, 0, len(items), loop.time()))
        self._queued += len(items)
        self._arrived.set()
        return await request.future

    async def aclose(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while self._queue:
            self._queue.popleft().request.fail(
                DependencyUnavailable(f"{self._name} is shutting down", code="shutting_down")
            )
        self._queued = 0

    async def _work(self) -> None:
        while True:
            await self._wait_for_batch()
            batch = self._take()
            if batch:
                await self._run(batch)

    async def _wait_for_batch(self) -> None:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        while self._queued < self._size:
            # The oldest item sets the deadline: one that arrived while the last batch ran has
            # waited already and goes at once.
            remaining = self._queue[0].enqueued_at + self._policy.max_wait_ms / 1000 - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[_Slice[T, R]]:
        room, taken = self._size, []
        while self._queue and room > 0:
            piece = self._queue.popleft()
            count = piece.stop - piece.start
            self._queued -= count
            if piece.request.future.done():  # cancelled by its caller, or failed earlier
                continue
            if count > room:
                tail = _Slice(piece.request, piece.start + room, piece.stop, piece.enqueued_at)
                self._queue.appendleft(tail)
                self._queued += count - room
                piece = _Slice(piece.request, piece.start, piece.start + room, piece.enqueued_at)
                count = room
            taken.append(piece)
            room -= count
        return taken

    async def _run(self, batch: list[_Slice[T, R]]) -> None:
        items = [item for piece in batch for item in piece.request.items[piece.start : piece.stop]]
        try:
            results = await asyncio.to_thread(self._run_sized, items)
        except asyncio.CancelledError:
            # Shutting down mid-batch: these requests left the queue, so fail them here.
            error = DependencyUnavailable(f"{self._name} is shutting down", code="shutting_down")
            for piece in batch:
                piece.request.fail(error)
            raise
        except Exception as exc:
            for piece in batch:
                piece.request.fail(exc)
            return
        offset = 0
        for piece in batch:
            count = piece.stop - piece.start
            piece.request.fill(piece.start, results[offset : offset + count])
            offset += count

    def _run_sized(self, items: list[T]) -> list[R]:
        """Runs in a worker thread; the event loop does not touch the size meanwhile."""
        ooms_before = self.oom_events
        results = self._run_adaptive(items)
        # Growth is judged per batch taken from the queue, and only when it fitted at once: the
        # halves of a batch that ran out of memory prove nothing about a larger size.
        if self.oom_events == ooms_before and len(items) >= self._size:
            self._full_batches += 1
            if self._full_batches >= self._policy.grow_after and self._size < self._policy.max_size:
                self._size = min(self._policy.max_size, self._size * 2)
                self._full_batches = 0
                log.info("%s: batch size grows to %d", self._name, self._size)
        return results

    def _run_adaptive(self, items: list[T]) -> list[R]:
        try:
            results = list(self._run_batch(items))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if len(items) <= self._policy.min_size:
                raise DependencyUnavailable(
                    f"{self._name}: out of memory on a batch of {len(items)}",
                    code="out_of_memory",
                ) from exc
            return self._split_after_oom(items)
        if len(results) != len(items):
            raise RuntimeError(f"{self._name}: {len(results)} results for {len(items)} items")
        self.batches_run += 1
        self.items_run += len(items)
        return results

    def _split_after_oom(self, items: list[T]) -> list[R]:
        self.oom_events += 1
        if self._on_oom is not None:
            self._on_oom()  # e.g. release the CUDA cache before the smaller retries
        self._size = max(self._policy.min_size, min(self._size, len(items)) // 2)
        self._full_batches = 0
        log.warning(
            "%s: out of memory on %d items; batch size now %d", self._name, len(items), self._size
        )
        results: list[R] = []
        start = 0
        while start < len(items):
            step = self._size  # re-read: a piece that runs out of memory again halves it again
            results.extend(self._run_adaptive(items[start : start + step]))
            start += step
        return results
