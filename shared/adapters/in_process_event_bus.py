"""The embedded event bus: subscribers in this process, called in the order they subscribed.

A subscriber that fails is logged and skipped: it neither stops the subscribers after it nor fails
the publisher, as with a real bus, where each target is delivered to on its own.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from shared.errors import InvalidInput
from shared.ports.event_bus import EVENT_TYPES, DomainEvent

log = logging.getLogger(__name__)

EventHandler = Callable[[DomainEvent], Awaitable[None] | None]
ALL_EVENTS = "*"


class InProcessEventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[str, EventHandler]] = []

    def subscribe(self, event_type: str, handler: EventHandler) -> Callable[[], None]:
        """Call ``handler`` (sync or async) for each event of ``event_type`` (``"*"``: every
        event). Returns a function that unsubscribes it."""
        if event_type != ALL_EVENTS and event_type not in EVENT_TYPES:
            raise InvalidInput(f"unknown event type {event_type!r}", code="invalid_event")
        entry = (event_type, handler)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    async def publish(self, event: DomainEvent) -> None:
        # A copy: a handler may subscribe or unsubscribe while we deliver.
        for event_type, handler in list(self._subscribers):
            if event_type not in (ALL_EVENTS, event.type):
                continue
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "event subscriber failed",
                    extra={
                        "event_type": event.type,
                        "event_id": event.id,
                        "subscriber": getattr(handler, "__qualname__", repr(handler)),
                    },
                )
