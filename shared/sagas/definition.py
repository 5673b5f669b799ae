"""What a saga is: named steps over a JSON state, each with an optional compensation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

SagaState = dict[str, Any]
StepAction = Callable[[SagaState], Awaitable[SagaState | None]]
Compensation = Callable[[SagaState], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one step: ``attempts`` in all, waiting ``backoff_s * 2**n`` between them."""

    attempts: int = 1
    backoff_s: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)


@dataclass(frozen=True)
class SagaStep:
    name: str
    action: StepAction
    compensation: Compensation | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: tuple[SagaStep, ...]

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name!r} has duplicate step names")

    def index_of(self, step_name: str) -> int:
        for index, step in enumerate(self.steps):
            if step.name == step_name:
                return index
        raise KeyError(step_name)
