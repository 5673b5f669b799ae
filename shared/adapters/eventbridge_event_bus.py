"""The event bus on Amazon EventBridge: one PutEvents entry per domain event.

The entry's ``DetailType`` is the event type (rules match on it) and its ``Detail`` the whole event
as JSON, so a consumer rebuilds it with ``DomainEvent.from_dict(event["detail"])``. PutEvents can
answer 200 and still reject entries, so ``FailedEntryCount`` is checked as well as SDK errors.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import DependencyUnavailable
from shared.ports.event_bus import DomainEvent


class EventBridgeEventBus:
    def __init__(
        self,
        bus_name: str,
        source: str = "quarry",
        client: Any = None,
        *,
        region: str | None = None,
    ) -> None:
        """``client``: a boto3 EventBridge (``events``) client, built from ``region`` when None."""
        self._bus_name = bus_name
        self._source = source
        self._client: Any = (
            client
            if client is not None
            else boto3.client(
                "events", region_name=region, config=Config(retries={"mode": "standard"})
            )
        )

    async def publish(self, event: DomainEvent) -> None:
        entry = {
            "EventBusName": self._bus_name,
            "Source": self._source,
            "DetailType": event.type,
            "Detail": json.dumps(event.to_dict(), separators=(",", ":")),
            "Time": event.occurred_at,
        }
        try:
            response = await asyncio.to_thread(self._client.put_events, Entries=[entry])
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            raise _unavailable(event, {"reason": code}) from exc
        except BotoCoreError as exc:
            raise _unavailable(event, {"reason": type(exc).__name__}) from exc
        if response.get("FailedEntryCount", 0):
            failed: dict[str, Any] = next(
                (e for e in response.get("Entries", []) if e.get("ErrorCode")), {}
            )
            raise _unavailable(
                event,
                {
                    "reason": str(failed.get("ErrorCode", "FailedEntry")),
                    "error_message": str(failed.get("ErrorMessage", "")),
                },
            )


def _unavailable(event: DomainEvent, details: dict[str, str]) -> DependencyUnavailable:
    return DependencyUnavailable(
        "the event bus did not take the event",
        code="event_bus_unavailable",
        details={"event_id": event.id, "event_type": event.type, **details},
    )
