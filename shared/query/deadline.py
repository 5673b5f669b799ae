"""A time budget passed down to every query stage."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    def __init__(self, budget_ms: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = clock()
        self.budget_ms = budget_ms

    def elapsed_ms(self) -> float:
        return (self._clock() - self._start) * 1000

    def remaining_ms(self) -> float:
        return self.budget_ms - self.elapsed_ms()

    def remaining_s(self) -> float:
        return max(self.remaining_ms(), 0.0) / 1000

    def allows(self, estimate_ms: float) -> bool:
        """Whether an optional stage expected to take ``estimate_ms`` still fits."""
        return self.remaining_ms() > estimate_ms
