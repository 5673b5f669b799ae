"""The event bus port: domain events other parts of Quarry (and other systems) react to."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast, get_args

from shared.errors import InvalidInput

EventType = Literal["document.ready", "document.failed", "document.deleted", "kb.changed"]
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class DomainEvent:
    type: EventType
    tenant_id: str
    kb_id: str
    document_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=_now)
    id: str = field(default_factory=_new_id)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise _invalid(f"unknown event type {self.type!r}")
        if self.occurred_at.tzinfo is None:
            raise _invalid("occurred_at must carry a time zone")
        # Normalised to UTC so that serialised events compare and sort as text.
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` reads it back."""
        return {
            "id": self.id,
            "type": self.type,
            "tenant_id": self.tenant_id,
            "kb_id": self.kb_id,
            "document_id": self.document_id,
            "detail": self.detail,
            "occurred_at": self.occurred_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainEvent:
        try:
            occurred_at = datetime.fromisoformat(str(data["occurred_at"]))
            document_id = data.get("document_id")
            detail = data.get("detail") or {}
            if not isinstance(detail, dict):
                raise TypeError("detail must be an object")
            return cls(
                type=cast(EventType, str(data["type"])),
                tenant_id=str(data["tenant_id"]),
                kb_id=str(data["kb_id"]),
                document_id=None if document_id is None else str(document_id),
                detail=detail,
                occurred_at=occurred_at,
                id=str(data["id"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid(f"not a domain event: {exc}") from exc


class EventBus(Protocol):
    async def publish(self, event: DomainEvent) -> None:
        """Deliver ``event``; ``DependencyUnavailable`` when the bus did not take it."""
        ...


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_event")
