from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.query.event_log import QueryEventLog

pytestmark = pytest.mark.unit


class RecordingRepository:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.fail = fail

    async def log(self, events: list[dict[str, Any]]) -> None:
        if self.fail:
            raise ConnectionError("database gone")
        self.batches.append(list(events))


async def test_events_are_written_in_batches_when_the_buffer_fills() -> None:
    repository = RecordingRepository()
    log = QueryEventLog(repository, max_buffer=3, flush_interval_s=60)  # type: ignore[arg-type]
    for i in range(7):
        await log.add({"n": i})
    assert [len(b) for b in repository.batches] == [3, 3]
    await log.aclose()
    assert [len(b) for b in repository.batches] == [3, 3, 1]


async def test_a_quiet_buffer_is_flushed_after_the_interval() -> None:
    repository = RecordingRepository()
    log = QueryEventLog(repository, max_buffer=100, flush_interval_s=0.01)  # type: ignore[arg-type]
    await log.add({"n": 1})
    await asyncio.sleep(0.05)
    assert repository.batches == [[{"n": 1}]]
    await log.aclose()


async def test_a_failed_write_is_dropped_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    log = QueryEventLog(RecordingRepository(fail=True), max_buffer=1)  # type: ignore[arg-type]
    await log.add({"n": 1})
    assert "could not write 1 query events" in caplog.text
    await log.aclose()
