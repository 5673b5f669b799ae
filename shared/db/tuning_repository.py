"""The router's threshold versions (``tuning_configs``), the query log as the tuner reads it, and
the tuner's audit entries.

Thresholds are global, so nothing here is scoped to a tenant: the tuner reads every tenant's
queries (scores, modes and latencies only, never query text).
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shared.db.engine import Database, unscoped
from shared.db.models import AuditEntry, QueryEvent, TuningConfig, utcnow
from shared.errors import Conflict
from shared.tuning.thresholds import QueryEventSample

TUNER_PRINCIPAL = "system:tuner"


class TuningRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def active(self) -> TuningConfig | None:
        """The newest version, or None before the first tuning run."""
        async with self._db.session() as session:
            return await session.scalar(
                select(TuningConfig).order_by(TuningConfig.version.desc()).limit(1)
            )

    async def append(
        self, fast: float, deep: float, samples: int, reason: str, details: dict[str, Any]
    ) -> TuningConfig:
        """Stores the next version (the newest + 1; the first is 1). Two runs that pick the same
        number collide on the primary key: the loser retries once with a fresh number."""
        values = {
            "fast_threshold": fast,
            "deep_threshold": deep,
            "samples": samples,
            "reason": reason,
            "details": details,
        }
        with suppress(IntegrityError):
            return await self._append_next(values)
        try:
            return await self._append_next(values)
        except IntegrityError as exc:
            raise Conflict(
                "another tuning run stored a version at the same time", code="tuning_conflict"
            ) from exc

    async def _append_next(self, values: dict[str, Any]) -> TuningConfig:
        async with self._db.session() as session:
            newest = await session.scalar(select(func.max(TuningConfig.version)))
            config = TuningConfig(version=(newest or 0) + 1, created_at=utcnow(), **values)
            session.add(config)
        return config

    async def recent_queries(
        self, since: datetime, *, until: datetime | None = None, limit: int | None = None
    ) -> list[QueryEventSample]:
        """Every tenant's queries logged at or after ``since`` (and before ``until``); the newest
        ``limit`` of them if given. System work: outside any request's tenant scope."""
        query = select(
            QueryEvent.mode,
            QueryEvent.complexity,
            QueryEvent.latency_ms,
            QueryEvent.cache,
            QueryEvent.degraded,
        ).where(QueryEvent.created_at >= since.astimezone(UTC))
        if until is not None:
            query = query.where(QueryEvent.created_at < until.astimezone(UTC))
        if limit is not None:
            query = query.order_by(QueryEvent.created_at.desc()).limit(limit)
        with unscoped():
            async with self._db.session() as session:
                rows = (await session.execute(query)).all()
        return [
            QueryEventSample(str(mode), float(score), float(latency), str(cache), bool(degraded))
            for mode, score, latency, cache, degraded in rows
        ]

    async def record_audit(
        self, action: str, outcome: str, details: dict[str, Any], *, resource: str | None = None
    ) -> None:
        """The tuner's entries belong to no tenant, so they are written outside any scope."""
        with unscoped():
            async with self._db.session() as session:
                session.add(
                    AuditEntry(
                        principal=TUNER_PRINCIPAL,
                        action=action,
                        resource=resource,
                        outcome=outcome,
                        details=details,
                    )
                )
