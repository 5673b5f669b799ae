"""The router's complexity thresholds and how the tuner re-fits them (pure functions, no I/O).

A query scores complexity in [0, 1] before it is routed: below ``fast`` it runs FAST, at or above
``deep`` DEEP, otherwise BALANCED. The score does not depend on the thresholds, so the logged
scores have the same distribution whatever thresholds were active, and the thresholds that give a
target mode mix are simply quantiles of them. Each run moves a threshold at most ``max_step``
toward its quantile, so one odd week cannot swing the router.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from shared.errors import ConfigurationError, InvalidInput
from shared.observability.metrics import quantile
from shared.query.router import MODES, Mode, select_mode

Outcome = Literal["applied", "skipped", "refused"]
K = TypeVar("K", bound=str)

# Moves smaller than this are noise (a re-fit on a near-identical window): no new version.
EPSILON = 1e-3
P95 = 0.95


@dataclass(frozen=True, slots=True)
class QueryEventSample:
    """What the tuner reads of one logged query (any tenant: the thresholds are global)."""

    mode: str
    complexity: float
    latency_ms: float
    cache: str  # "hit" | "miss"
    degraded: bool


@dataclass(frozen=True)
class Thresholds:
    fast: float  # complexity below: FAST
    deep: float  # complexity at or above: DEEP

    def __post_init__(self) -> None:
        if not 0.0 <= self.fast <= self.deep <= 1.0:  # also refuses NaN
            raise InvalidInput(
                f"thresholds need 0 <= fast <= deep <= 1, got fast={self.fast} deep={self.deep}",
                code="invalid_thresholds",
            )

    def mode_for(self, complexity: float) -> Mode:
        return select_mode(complexity, self.fast, self.deep)

    def to_dict(self) -> dict[str, float]:
        return {"fast": self.fast, "deep": self.deep}


@dataclass(frozen=True)
class TargetMix:
    """The share of queries each mode should get."""

    fast: float
    balanced: float
    deep: float

    def __post_init__(self) -> None:
        shares = (self.fast, self.balanced, self.deep)
        if not all(0.0 <= s <= 1.0 for s in shares) or not math.isclose(sum(shares), 1.0):
            raise ConfigurationError(
                f"the target mode mix must be shares that add up to 1, got {shares}",
                code="invalid_target_mix",
            )

    def to_dict(self) -> dict[str, float]:
        return {"fast": self.fast, "balanced": self.balanced, "deep": self.deep}


@dataclass(frozen=True)
class TuningDecision:
    thresholds: Thresholds  # what the router should use: the current ones unless applied
    outcome: Outcome
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "applied": self.applied,
            "reason": self.reason,
            "thresholds": self.thresholds.to_dict(),
            "details": self.details,
        }


def mode_mix(complexities: Iterable[float], thresholds: Thresholds) -> dict[Mode, float]:
    """The share of ``complexities`` each mode would get under ``thresholds``."""
    counts = dict.fromkeys(MODES, 0)
    for c in complexities:
        counts[thresholds.mode_for(c)] += 1
    total = sum(counts.values())
    return {m: counts[m] / total if total else 0.0 for m in MODES}


def complexity_quantile(ordered: Sequence[float], share: float) -> float:
    """The threshold that puts ``share`` of the (sorted) values below it: midway between the
    k-th and (k+1)-th smallest, k = share * n, so it does not sit on a logged value."""
    n = len(ordered)
    k = round(share * n)
    if k <= 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(max((ordered[k - 1] + ordered[k]) / 2, 0.0), 1.0)


def uncached_p95_ms(samples: Iterable[QueryEventSample]) -> dict[str, float]:
    """p95 latency per mode of the uncached queries (a cache hit says nothing about what the
    mode costs). Modes without an uncached query are left out."""
    latencies: dict[str, list[float]] = {}
    for s in samples:
        if s.cache != "hit":
            latencies.setdefault(s.mode, []).append(s.latency_ms)
    return {mode: quantile(sorted(values), P95) for mode, values in latencies.items()}


def fit_thresholds(
    samples: Sequence[float],
    current: Thresholds,
    targets: TargetMix,
    *,
    max_step: float,
    min_samples: int,
    budgets_ms: Mapping[str, float],
    p95_ms_by_mode: Mapping[str, float],
) -> TuningDecision:
    """The next thresholds for the logged ``samples`` (complexity scores)."""
    n = len(samples)
    details: dict[str, Any] = {
        "samples": n,
        "min_samples": min_samples,
        "max_step": max_step,
        "current": current.to_dict(),
        "targets": targets.to_dict(),
        "budgets_ms": dict(budgets_ms),
        "p95_ms": {m: round(v, 2) for m, v in p95_ms_by_mode.items()},
    }
    if n < min_samples:
        reason = f"only {n} queries logged in the window; at least {min_samples} are needed"
        return TuningDecision(current, "refused", reason, details)

    ordered = sorted(samples)
    ideal = Thresholds(
        complexity_quantile(ordered, targets.fast),
        complexity_quantile(ordered, targets.fast + targets.balanced),
    )
    proposed = Thresholds(
        _toward(current.fast, ideal.fast, max_step), _toward(current.deep, ideal.deep, max_step)
    )
    guarded, held = _latency_guard(current, proposed, budgets_ms, p95_ms_by_mode)
    details.update(
        ideal=_rounded(ideal.to_dict()),
        proposed=_rounded(proposed.to_dict()),
        latency_guard=held,
        mix_current=_rounded(mode_mix(ordered, current)),
        mix_projected=_rounded(mode_mix(ordered, guarded)),
    )
    if _distance(guarded, current) < EPSILON:
        if held and _distance(proposed, current) >= EPSILON:
            reason = "latency guard kept the thresholds: " + "; ".join(held)
            return TuningDecision(current, "refused", reason, details)
        reason = "the thresholds already give the target mix"
        return TuningDecision(current, "skipped", reason, details)
    reason = (
        f"fast {current.fast:.3f} -> {guarded.fast:.3f}, deep {current.deep:.3f} -> "
        f"{guarded.deep:.3f} toward the target mix (ideal fast {ideal.fast:.3f}, "
        f"deep {ideal.deep:.3f})"
    )
    if held:
        reason += "; " + "; ".join(held)
    return TuningDecision(guarded, "applied", reason, details)


def _toward(value: float, target: float, max_step: float) -> float:
    if abs(target - value) <= max_step:
        return target  # exactly: value + (target - value) can round past 1.0
    return value + math.copysign(max_step, target - value)


def _distance(a: Thresholds, b: Thresholds) -> float:
    return max(abs(a.fast - b.fast), abs(a.deep - b.deep))


def _latency_guard(
    current: Thresholds,
    proposed: Thresholds,
    budgets_ms: Mapping[str, float],
    p95_ms: Mapping[str, float],
) -> tuple[Thresholds, list[str]]:
    """Holds back every move that would send a mode over its latency budget more traffic:
    a rising fast threshold feeds FAST, a falling deep one DEEP, and either a falling fast or a
    rising deep threshold feeds BALANCED. Returns the thresholds and one note per held move."""
    over = {m for m in MODES if m in p95_ms and m in budgets_ms and p95_ms[m] > budgets_ms[m]}
    fast, deep = proposed.fast, proposed.deep
    held: list[str] = []

    def hold(mode: str, what: str) -> None:
        held.append(
            f"{mode.upper()} p95 {p95_ms[mode]:.0f} ms is over its {budgets_ms[mode]:.0f} ms "
            f"budget: kept the {what} so it gets no more traffic"
        )

    if "fast" in over and fast > current.fast:
        fast = current.fast
        hold("fast", "fast threshold from rising")
    if "balanced" in over and fast < current.fast:
        fast = current.fast
        hold("balanced", "fast threshold from falling")
    if "balanced" in over and deep > current.deep:
        deep = current.deep
        hold("balanced", "deep threshold from rising")
    if "deep" in over and deep < current.deep:
        deep = current.deep
        hold("deep", "deep threshold from falling")
    # A held fast threshold can end above a falling deep one: closing the BALANCED band there
    # only takes traffic from DEEP and BALANCED, never adds to a mode over budget.
    return Thresholds(fast, max(deep, fast)), held


def _rounded(values: Mapping[K, float]) -> dict[K, float]:
    return {k: round(v, 4) for k, v in values.items()}
