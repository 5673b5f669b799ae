"""Audit events for sensitive operations (credentials issued or revoked, secrets changed,
refresh-token theft detected). The repository writes them to ``audit_log``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Outcome = Literal["success", "denied", "failure"]


@dataclass(frozen=True)
class AuditEvent:
    action: str  # e.g. "api_key.create", "secret.delete", "refresh_token.reuse"
    outcome: Outcome
    tenant_id: uuid.UUID | None
    principal: str | None  # ``Principal.subject``, or ``user:<id>`` for a token's owner
    resource: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ip: str | None = None


class AuditSink(Protocol):
    async def record_audit(self, event: AuditEvent) -> None: ...


@dataclass(frozen=True)
class AuditRecord:
    """A stored entry, as tenant admins read it (``GET /v1/audit``)."""

    id: int
    created_at: datetime
    action: str
    outcome: str
    principal: str | None
    resource: str | None
    request_id: str | None
    ip: str | None
    details: dict[str, Any]
