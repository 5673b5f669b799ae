"""Fitting the router's thresholds to logged complexities (pure functions)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from shared.errors import ConfigurationError, InvalidInput
from shared.tuning.thresholds import (
    EPSILON,
    QueryEventSample,
    TargetMix,
    Thresholds,
    TuningDecision,
    complexity_quantile,
    fit_thresholds,
    mode_mix,
    uncached_p95_ms,
)

pytestmark = pytest.mark.unit

TARGETS = TargetMix(fast=0.45, balanced=0.35, deep=0.20)
BUDGETS = {"fast": 1000.0, "balanced": 3000.0, "deep": 15000.0}
DEFAULTS = Thresholds(0.35, 0.70)


def uniform(n: int = 5000, seed: int = 7) -> list[float]:
    """Uniform complexities: the ideal thresholds are the target shares themselves."""
    rng = random.Random(seed)
    return [round(rng.random(), 4) for _ in range(n)]


def fit(samples: list[float], current: Thresholds = DEFAULTS, **overrides: Any) -> TuningDecision:
    options: dict[str, Any] = {
        "max_step": 0.05,
        "min_samples": 1000,
        "budgets_ms": BUDGETS,
        "p95_ms_by_mode": {},
    }
    options.update(overrides)
    return fit_thresholds(samples, current, TARGETS, **options)


def test_thresholds_move_toward_the_target_mix() -> None:
    samples = uniform()
    decision = fit(samples)
    assert decision.applied
    assert decision.outcome == "applied"
    # ideal: fast ~0.45 (above 0.35), deep ~0.80 (above 0.70): both rise by one full step
    assert decision.thresholds.fast == pytest.approx(0.40)
    assert decision.thresholds.deep == pytest.approx(0.75)
    assert decision.details["ideal"]["fast"] == pytest.approx(0.45, abs=0.02)
    assert decision.details["ideal"]["deep"] == pytest.approx(0.80, abs=0.02)
    assert decision.details["mix_projected"]["fast"] > decision.details["mix_current"]["fast"]
    assert "toward the target mix" in decision.reason


def test_repeated_runs_converge_step_by_step() -> None:
    samples = uniform()
    current = Thresholds(0.05, 0.20)
    moves = []
    for _ in range(20):
        decision = fit(samples, current)
        if not decision.applied:
            break
        step = max(
            abs(decision.thresholds.fast - current.fast),
            abs(decision.thresholds.deep - current.deep),
        )
        assert step <= 0.05 + 1e-9
        moves.append(step)
        current = decision.thresholds
    assert decision.outcome == "skipped"
    # deep: 0.20 -> ~0.80 takes twelve full steps and a last partial one
    assert len(moves) == 13
    assert all(step == pytest.approx(0.05) for step in moves[:-1])
    mix = mode_mix(samples, current)
    assert mix["fast"] == pytest.approx(TARGETS.fast, abs=0.005)
    assert mix["balanced"] == pytest.approx(TARGETS.balanced, abs=0.005)
    assert mix["deep"] == pytest.approx(TARGETS.deep, abs=0.005)


def test_skewed_distribution_pulls_thresholds_down() -> None:
    samples = [s**3 for s in uniform()]  # mostly simple queries
    decision = fit(samples, max_step=1.0)
    assert decision.thresholds.fast == pytest.approx(0.45**3, abs=0.01)
    assert decision.thresholds.deep == pytest.approx(0.80**3, abs=0.02)
    assert decision.details["mix_projected"]["deep"] == pytest.approx(0.20, abs=0.005)


def test_refuses_with_fewer_samples_than_the_minimum() -> None:
    decision = fit(uniform(999))
    assert decision.outcome == "refused"
    assert not decision.applied
    assert decision.thresholds == DEFAULTS
    assert "only 999 queries" in decision.reason
    assert "at least 1000" in decision.reason


def test_no_op_below_epsilon() -> None:
    samples = uniform()
    ideal = fit(samples, max_step=1.0).thresholds
    nudged = Thresholds(ideal.fast + EPSILON / 2, ideal.deep - EPSILON / 2)
    decision = fit(samples, nudged)
    assert decision.outcome == "skipped"
    assert decision.thresholds == nudged


def test_latency_guard_refuses_more_traffic_for_a_slow_mode() -> None:
    samples = uniform()
    # FAST is over budget: the fast threshold may not rise (the deep one still may).
    decision = fit(samples, p95_ms_by_mode={"fast": 1500.0, "balanced": 900.0})
    assert decision.applied
    assert decision.thresholds.fast == DEFAULTS.fast
    assert decision.thresholds.deep == pytest.approx(0.75)
    assert "FAST p95 1500 ms is over its 1000 ms budget" in decision.reason
    assert decision.details["latency_guard"]
    assert decision.details["mix_projected"]["fast"] <= decision.details["mix_current"]["fast"]


def test_latency_guard_refuses_the_whole_run_when_every_move_is_blocked() -> None:
    samples = uniform()
    # Moving toward the ideal raises both thresholds: FAST gains from the first, BALANCED from
    # the second; both over budget, nothing may move.
    decision = fit(samples, p95_ms_by_mode={"fast": 1200.0, "balanced": 4000.0})
    assert decision.outcome == "refused"
    assert decision.thresholds == DEFAULTS
    assert decision.reason.startswith("latency guard kept the thresholds")
    assert "BALANCED p95 4000 ms" in decision.reason


def test_latency_guard_allows_moves_that_relieve_a_slow_mode() -> None:
    samples = uniform()
    # DEEP over budget: the deep threshold rising takes traffic away from it, so it is allowed.
    decision = fit(samples, p95_ms_by_mode={"deep": 20000.0})
    assert decision.applied
    assert decision.details["latency_guard"] == []
    assert decision.thresholds.deep == pytest.approx(0.75)


def test_latency_guard_closes_balanced_band_rather_than_feed_it() -> None:
    samples = [s**4 for s in uniform()]  # ideal fast ~0.04, deep ~0.41
    current = Thresholds(0.45, 0.47)
    decision = fit(samples, current, p95_ms_by_mode={"balanced": 5000.0})
    shares_before = mode_mix(samples, current)
    shares_after = mode_mix(samples, decision.thresholds)
    assert decision.thresholds.fast == current.fast
    assert decision.thresholds.deep == current.fast  # fell, but not below the held fast
    assert shares_after["balanced"] == 0.0
    assert shares_after["balanced"] <= shares_before["balanced"]


def test_p95_counts_uncached_queries_only() -> None:
    samples = [QueryEventSample("fast", 0.1, float(ms), "miss", False) for ms in range(1, 101)]
    samples += [QueryEventSample("fast", 0.1, 99_999.0, "hit", False)] * 50
    samples += [QueryEventSample("deep", 0.9, 5.0, "hit", False)]
    p95 = uncached_p95_ms(samples)
    assert p95 == {"fast": pytest.approx(95.0, abs=1.0)}


def test_quantile_edges() -> None:
    ordered = [0.1, 0.2, 0.3, 0.4]
    assert complexity_quantile(ordered, 0.0) == 0.0
    assert complexity_quantile(ordered, 1.0) == 1.0
    assert complexity_quantile(ordered, 0.5) == pytest.approx(0.25)


def test_mode_mix() -> None:
    mix = mode_mix([0.1, 0.2, 0.5, 0.7, 0.9], Thresholds(0.35, 0.70))
    assert mix == {"fast": 0.4, "balanced": 0.2, "deep": 0.4}
    assert mode_mix([], DEFAULTS) == {"fast": 0.0, "balanced": 0.0, "deep": 0.0}


@pytest.mark.parametrize(
    ("fast", "deep"), [(-0.1, 0.5), (0.6, 0.5), (0.2, 1.1), (float("nan"), 0.5)]
)
def test_invalid_thresholds(fast: float, deep: float) -> None:
    with pytest.raises(InvalidInput) as error:
        Thresholds(fast, deep)
    assert error.value.code == "invalid_thresholds"


def test_invalid_target_mix() -> None:
    with pytest.raises(ConfigurationError):
        TargetMix(0.5, 0.5, 0.5)
    with pytest.raises(ConfigurationError):
        TargetMix(-0.1, 0.9, 0.2)


def test_decision_is_json_ready() -> None:
    import json

    decision = fit(uniform(), p95_ms_by_mode={"fast": 2000.0})
    payload = json.loads(json.dumps(decision.to_dict()))
    assert payload["outcome"] == "applied"
    assert payload["thresholds"]["fast"] == DEFAULTS.fast
