"""One saga step as a Step Functions task: the state machine carries the state and does the
retries; the task runs the step's action (or its compensation) and returns the new state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import InvalidInput
from shared.sagas.definition import SagaDefinition, SagaState


async def run_task(definition: SagaDefinition, task: Mapping[str, Any]) -> SagaState:
    """``task``: ``{"saga": name, "step": step, "state": {...}, "compensate": bool}``."""
    if task.get("saga") != definition.name:
        raise InvalidInput(f"this task runner serves the {definition.name} saga", code="bad_task")
    try:
        step = definition.steps[definition.index_of(str(task.get("step")))]
    except KeyError as exc:
        raise InvalidInput(f"unknown step {task.get('step')!r}", code="bad_task") from exc
    state: SagaState = dict(task.get("state") or {})
    if "run_id" not in state:
        raise InvalidInput("the task state needs a run_id", code="bad_task")
    if task.get("compensate"):
        if step.compensation is not None:
            await step.compensation(state)
        return state
    updates = await step.action(state)
    if updates:
        state.update(updates)
    return state
