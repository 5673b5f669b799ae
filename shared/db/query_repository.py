"""The query log (``query_events``) and the usage figures computed from it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from shared.db.engine import Database, unscoped
from shared.db.models import KnowledgeBase, QueryEvent


class QueryRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def log(self, events: Sequence[dict[str, Any]]) -> None:
        """Writes a batch that may hold several tenants' events (the log buffers across
        requests), so as system work, outside the current request's tenant scope."""
        if not events:
            return
        with unscoped():
            async with self._db.session() as session:
                await session.execute(insert(QueryEvent), list(events))

    async def window(
        self, tenant_id: uuid.UUID, since: datetime, limit: int = 200_000
    ) -> list[tuple[str, str, float, str, bool]]:
        """(kb name, mode, latency ms, cache outcome, degraded) of the tenant's recent queries."""
        async with self._db.session() as session:
            rows = await session.execute(
                select(
                    KnowledgeBase.name,
                    QueryEvent.mode,
                    QueryEvent.latency_ms,
                    QueryEvent.cache,
                    QueryEvent.degraded,
                )
                .join(KnowledgeBase, KnowledgeBase.id == QueryEvent.kb_id)
                .where(QueryEvent.tenant_id == tenant_id, QueryEvent.created_at >= since)
                .order_by(QueryEvent.created_at.desc())
                .limit(limit)
            )
            return [(a, b, float(c), d, bool(e)) for a, b, c, d, e in rows.all()]
