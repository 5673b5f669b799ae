"""The task token port: how a decision reaches a state machine task that waits for it.

A workflow's approval compiles to a ``.waitForTaskToken`` task (``shared.workflows.asl``): the
workflows function records the approval with its token, and deciding the approval sends the
outcome with the token, which ends the task. ``StepFunctionsTaskTokens`` (``shared.adapters``)
sends them; locally approvals resume the in-process engine and no token exists.
"""

from __future__ import annotations

from typing import Any, Protocol


class TaskTokens(Protocol):
    async def succeed(self, token: str, output: Any) -> None:
        """Ends the waiting task with ``output`` (JSON) as its result."""
        ...

    async def fail(self, token: str, *, error: str, cause: str) -> None:
        """Fails the waiting task with the error name ``error`` (what the machine's catchers
        match) and ``cause``."""
        ...
