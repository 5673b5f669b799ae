"""Task tokens on AWS Step Functions: ``SendTaskSuccess`` and ``SendTaskFailure``.

A token Step Functions no longer waits for (the task timed out, the execution ended or was
stopped: ``TaskTimedOut``, ``TaskDoesNotExist``, ``InvalidToken``) is a ``Conflict``
(``task_not_waiting``): the decision came too late. Anything else is ``DependencyUnavailable``.
boto3 is synchronous: the calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import Conflict, DependencyUnavailable

NOT_WAITING = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
MAX_ERROR_CHARS = 256  # the API's limits
MAX_CAUSE_CHARS = 32768


class StepFunctionsTaskTokens:
    def __init__(self, client: Any = None, *, region: str | None = None) -> None:
        """``client``: a boto3 ``stepfunctions`` client, built from ``region`` when None."""
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "stepfunctions", region_name=region, config=Config(retries={"mode": "standard"})
            )
        self._client: Any = client

    async def succeed(self, token: str, output: Any) -> None:
        await self._send("send_task_success", taskToken=token, output=json.dumps(output))

    async def fail(self, token: str, *, error: str, cause: str) -> None:
        await self._send(
            "send_task_failure",
            taskToken=token,
            error=error[:MAX_ERROR_CHARS],
            cause=cause[:MAX_CAUSE_CHARS],
        )

    async def _send(self, operation: str, **arguments: Any) -> None:
        try:
            await asyncio.to_thread(getattr(self._client, operation), **arguments)
        except ClientError as exc:
            reason = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if reason in NOT_WAITING:
                raise Conflict(
                    f"the state machine no longer waits for this decision ({reason})",
                    code="task_not_waiting",
                    details={"reason": reason},
                ) from exc
            raise _unavailable(reason) from exc
        except BotoCoreError as exc:
            raise _unavailable(type(exc).__name__) from exc


def _unavailable(reason: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"Step Functions did not take the decision: {reason}",
        code="stepfunctions_unavailable",
        details={"reason": reason},
    )
