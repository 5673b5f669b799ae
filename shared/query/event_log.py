"""The query log writer: events are buffered and written in batches off the request path.

A database write per query (tens of ms on SQLite) would cost more than a cached answer. Events
are flushed when the buffer fills, after ``flush_interval_s``, and on ``aclose``. A flush that
fails is logged and dropped: the query log is telemetry, it must never fail or slow a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from shared.db.query_repository import QueryRepository

log = logging.getLogger(__name__)


class QueryEventLog:
    def __init__(
        self, repository: QueryRepository, *, max_buffer: int = 200, flush_interval_s: float = 1.0
    ) -> None:
        self._repository = repository
        self._max_buffer = max_buffer
        self._interval = flush_interval_s
        self._buffer: list[dict[str, Any]] = []
        self._timer: asyncio.Task[None] | None = None

    async def add(self, event: dict[str, Any]) -> None:
        self._buffer.append(event)
        if len(self._buffer) >= self._max_buffer:
            await self.flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._interval)
        await self.flush()

    async def flush(self) -> None:
        events, self._buffer = self._buffer, []
        if not events:
            return
        try:
            await self._repository.log(events)
        except Exception:
            log.warning("could not write %d query events", len(events), exc_info=True)

    async def aclose(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.flush()
