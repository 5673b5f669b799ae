"""What a saga is: named steps over a JSON state, each with an optional compensation, and what
the saga does once a run has ended (its end hooks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.sagas.runner import SagaRunRecord

SagaState = dict[str, Any]
StepAction = Callable[[SagaState], Awaitable[SagaState | None]]
Compensation = Callable[[SagaState], Awaitable[None]]
# Called with the run as recorded at its end (``shared.sagas.runner.end_run``).
EndHook = Callable[["SagaRunRecord"], Awaitable[None]]


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
    """``on_success`` runs once a run has succeeded; ``on_failure`` once a failed run's
    compensations have run (it ended ``compensated`` or ``failed``). Both runners call them
    after recording the end: in-process, and the final task of the Step Functions machine."""

    name: str
    steps: tuple[SagaStep, ...]
    on_success: EndHook | None = None
    on_failure: EndHook | None = None

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name!r} has duplicate step names")

    def index_of(self, step_name: str) -> int:
        for index, step in enumerate(self.steps):
            if step.name == step_name:
                return index
        raise KeyError(step_name)
