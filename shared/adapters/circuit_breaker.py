"""A circuit breaker: stop calling an endpoint that keeps failing, try it again after a pause.

Closed: calls go through; ``failure_threshold`` consecutive failures open it. Open: calls fail at
once with ``CircuitOpenError`` (code ``circuit_open``, ``retry_after_s`` in its details) so callers
degrade instead of waiting on timeouts. After ``reset_timeout_s`` it is half-open: up to
``half_open_max_calls`` trial calls go through; a success closes it, a failure opens it again.

Written here rather than taken from pybreaker, the maintained option: pybreaker holds one lock
for the whole duration of every call, which would serialise all concurrent requests to the GPU
endpoint, and its clock is the wall clock, which cannot be injected for tests. This one holds its
lock only to update its counters and reads an injectable monotonic clock.

Each time it opens it counts one ``circuit_open`` (dimension ``endpoint``: its name) on the
metrics sink it was given; the CloudWatch alarm on breaker trips watches that metric.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

from shared.errors import DependencyUnavailable

if TYPE_CHECKING:
    from shared.observability.metrics import MetricsSink

log = logging.getLogger(__name__)

CIRCUIT_OPEN_METRIC = "circuit_open"


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(DependencyUnavailable):
    code = "circuit_open"

    def __init__(self, name: str, retry_after_s: float) -> None:
        super().__init__(
            f"{name} is failing; not calling it for {retry_after_s:.1f} s",
            details={"endpoint": name, "retry_after_s": round(retry_after_s, 3)},
        )
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        metrics: MetricsSink | None = None,
    ) -> None:
        if failure_threshold < 1 or half_open_max_calls < 1 or reset_timeout_s <= 0:
            raise ValueError("need failure_threshold >= 1, half_open_max_calls >= 1, timeout > 0")
        self.name = name
        self._threshold = failure_threshold
        self._reset_timeout_s = reset_timeout_s
        self._half_open_max = half_open_max_calls
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current()

    def allow(self) -> None:
        """Call before each attempt: raises ``CircuitOpenError`` instead of letting it through.
        Every attempt let through must be followed by ``record_success`` or ``record_failure``."""
        with self._lock:
            state = self._current()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and self._trials < self._half_open_max:
                self._trials += 1
                return
            if state is BreakerState.OPEN:
                wait = self._opened_at + self._reset_timeout_s - self._clock()
            else:  # half-open with its trial calls under way: their outcome decides
                wait = self._reset_timeout_s
        raise CircuitOpenError(self.name, max(0.0, wait))

    def record_success(self) -> None:
        with self._lock:
            state = self._current()
            if state is BreakerState.OPEN:
                return  # a call let through before it opened: too late to count
            if state is BreakerState.HALF_OPEN:
                log.info("circuit %s closed: the trial call succeeded", self.name)
            self._state, self._failures, self._trials = BreakerState.CLOSED, 0, 0

    def record_failure(self) -> None:
        with self._lock:
            state = self._current()
            if state is BreakerState.OPEN:
                return
            self._failures += 1
            if state is not BreakerState.HALF_OPEN and self._failures < self._threshold:
                return
            self._state, self._opened_at, self._trials = BreakerState.OPEN, self._clock(), 0
            failures = self._failures
        log.warning(
            "circuit %s opened after %d consecutive failures",
            self.name,
            failures,
            extra={"endpoint": self.name, "reset_timeout_s": self._reset_timeout_s},
        )
        if self._metrics is not None:
            self._metrics.increment(CIRCUIT_OPEN_METRIC, endpoint=self.name)

    def _current(self) -> BreakerState:
        """The state, moving open to half-open once the pause is over (caller holds the lock)."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self._reset_timeout_s
        ):
            self._state, self._trials = BreakerState.HALF_OPEN, 0
        return self._state
