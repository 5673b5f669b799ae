"""The tuning use case (re-fit the router's thresholds to the logged queries, store a new
version, audit every run) and the router's side of it (``ThresholdProvider``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.tuning.thresholds import (
    QueryEventSample,
    TargetMix,
    Thresholds,
    TuningDecision,
    fit_thresholds,
    uncached_p95_ms,
)

if TYPE_CHECKING:
    from shared.db.engine import Database
    from shared.settings import QuerySettings, Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# The newest queries a run reads: bounds a run's memory (a Lambda) on a busy platform while
# still pinning the quantiles to well under 0.01.
MAX_SAMPLES = 200_000
AUDIT_ACTION = "tuning.run"


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoredConfig(Protocol):
    @property
    def version(self) -> int: ...
    @property
    def fast_threshold(self) -> float: ...
    @property
    def deep_threshold(self) -> float: ...
    @property
    def created_at(self) -> datetime: ...


class ConfigSource(Protocol):
    async def active(self) -> StoredConfig | None: ...


class TuningStore(ConfigSource, Protocol):
    async def append(
        self, fast: float, deep: float, samples: int, reason: str, details: dict[str, Any]
    ) -> StoredConfig: ...

    async def recent_queries(
        self, since: datetime, *, until: datetime | None = None, limit: int | None = None
    ) -> Sequence[QueryEventSample]: ...

    async def record_audit(
        self, action: str, outcome: str, details: dict[str, Any], *, resource: str | None = None
    ) -> None: ...


@dataclass(frozen=True)
class ActiveConfig:
    thresholds: Thresholds
    version: int  # 0: nothing tuned yet, the defaults from the settings
    created_at: datetime | None = None


async def load_active(source: ConfigSource, defaults: Thresholds) -> ActiveConfig:
    stored = await source.active()
    if stored is None:
        return ActiveConfig(defaults, 0)
    thresholds = Thresholds(stored.fast_threshold, stored.deep_threshold)
    return ActiveConfig(thresholds, stored.version, stored.created_at)


class TuningService:
    def __init__(
        self,
        repository: TuningStore,
        *,
        defaults: Thresholds,
        targets: TargetMix,
        budgets_ms: Mapping[str, float],
        max_step: float,
        min_samples: int,
        window_hours: int,
        max_samples: int = MAX_SAMPLES,
        clock: Clock = utc_now,
    ) -> None:
        self._repository = repository
        self._defaults = defaults
        self._targets = targets
        self._budgets_ms = dict(budgets_ms)
        self._max_step = max_step
        self._min_samples = min_samples
        self._window = timedelta(hours=window_hours)
        self._max_samples = max_samples
        self._clock = clock

    async def active_config(self) -> ActiveConfig:
        return await load_active(self._repository, self._defaults)

    async def preview(self, now: datetime | None = None) -> TuningDecision:
        """What a run would decide now; stores nothing."""
        return await self._fit(await self.active_config(), now or self._clock())

    async def run(self, now: datetime | None = None, *, trigger: str = "manual") -> TuningDecision:
        """Re-fits the thresholds; stores a new version when they move; audits every run."""
        active = await self.active_config()
        decision = await self._fit(active, now or self._clock())
        version = active.version
        if decision.applied:
            fitted = decision.thresholds
            stored = await self._repository.append(
                fitted.fast,
                fitted.deep,
                decision.details["samples"],
                decision.reason,
                decision.details,
            )
            version = stored.version
        decision = replace(
            decision,
            details={
                **decision.details,
                "version": version,
                "previous_version": active.version,
                "trigger": trigger,
            },
        )
        await self._repository.record_audit(
            AUDIT_ACTION,
            decision.outcome,
            {"reason": decision.reason, **decision.details},
            resource=f"tuning_config:{version}",
        )
        log.info(
            "tuning run %s: %s",
            decision.outcome,
            decision.reason,
            extra={"tuning_outcome": decision.outcome, "tuning_version": version},
        )
        return decision

    async def _fit(self, active: ActiveConfig, now: datetime) -> TuningDecision:
        since = now - self._window
        samples = await self._repository.recent_queries(since, until=now, limit=self._max_samples)
        decision = fit_thresholds(
            [s.complexity for s in samples],
            active.thresholds,
            self._targets,
            max_step=self._max_step,
            min_samples=self._min_samples,
            budgets_ms=self._budgets_ms,
            p95_ms_by_mode=uncached_p95_ms(samples),
        )
        window = {"window_start": since.astimezone(UTC).isoformat()}
        return replace(decision, details={**decision.details, **window})


class ThresholdProvider:
    """The router's view of the active thresholds: read from the store at most every
    ``refresh_s``, so a new version reaches every warm function within that time without a
    database read per query."""

    def __init__(
        self,
        repository: ConfigSource,
        defaults: Thresholds,
        refresh_s: float,
        clock: Clock = utc_now,
    ) -> None:
        self._repository = repository
        self._defaults = defaults
        self._refresh = timedelta(seconds=refresh_s)
        self._clock = clock
        self._cached: ActiveConfig | None = None
        self._loaded_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> Thresholds:
        return (await self.active()).thresholds

    async def active(self) -> ActiveConfig:
        cached = self._fresh(self._clock())
        if cached is not None:
            return cached
        async with self._lock:  # one read when many queries find the cache stale at once
            now = self._clock()
            cached = self._fresh(now)
            if cached is not None:
                return cached
            try:
                self._cached = await load_active(self._repository, self._defaults)
            except Exception:
                # Routing must not fail with the tuning table: keep what we had, retry later.
                log.warning("could not read the tuning config; keeping the last one", exc_info=True)
                self._cached = self._cached or ActiveConfig(self._defaults, 0)
            self._loaded_at = now
            return self._cached

    def _fresh(self, now: datetime) -> ActiveConfig | None:
        if self._cached is None or self._loaded_at is None:
            return None
        age = now - self._loaded_at
        return self._cached if timedelta(0) <= age < self._refresh else None


def default_thresholds(query: QuerySettings) -> Thresholds:
    return Thresholds(query.fast_threshold, query.deep_threshold)


def tuning_service_for(database: Database, settings: Settings) -> TuningService:
    from shared.db.tuning_repository import TuningRepository

    tuning, query = settings.tuning, settings.query
    return TuningService(
        TuningRepository(database),
        defaults=default_thresholds(query),
        targets=TargetMix(tuning.target_fast, tuning.target_balanced, tuning.target_deep),
        budgets_ms={
            "fast": query.fast_budget_ms,
            "balanced": query.balanced_budget_ms,
            "deep": query.deep_budget_ms,
        },
        max_step=tuning.max_step,
        min_samples=tuning.min_samples,
        window_hours=tuning.window_hours,
    )


def threshold_provider_for(database: Database, settings: Settings) -> ThresholdProvider:
    from shared.db.tuning_repository import TuningRepository

    return ThresholdProvider(
        TuningRepository(database), default_thresholds(settings.query), settings.tuning.refresh_s
    )
