from __future__ import annotations

import pytest

from shared.query.deadline import Deadline
from shared.query.expansion import expansion_terms, tokens
from shared.query.router import complexity, features, select_mode
from shared.query.stats import query_stats

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("simple", "hard"),
    [
        (
            "hotel budget",
            "Compare the hotel budgets of Zurich and Geneva, and explain why they differ.",
        ),
        (
            "What is BRCA1?",
            "How does BRCA1 expression affect survival after chemotherapy in 2019 trials?",
        ),
        (
            "aspirin dose",
            "What is the relationship between aspirin dose, platelet function and bleeding risk?",
        ),
    ],
)
def test_harder_questions_score_higher(simple: str, hard: str) -> None:
    assert 0 <= complexity(simple) < complexity(hard) <= 1


def test_features_see_cues() -> None:
    f = features("Compare GDP growth in 2020 versus 2021 for Germany and France, then explain why.")
    assert f.comparison
    assert f.multi_hop
    assert f.numbers == 2
    assert f.entities >= 2
    assert f.clauses >= 2


@pytest.mark.parametrize(
    ("score", "mode"),
    [
        (0.0, "fast"),
        (0.349, "fast"),
        (0.35, "balanced"),
        (0.69, "balanced"),
        (0.70, "deep"),
        (1.0, "deep"),
    ],
)
def test_thresholds_select_the_mode(score: float, mode: str) -> None:
    assert select_mode(score, 0.35, 0.70) == mode


def test_deadline_counts_down_with_its_clock() -> None:
    now = [0.0]
    deadline = Deadline(1000, clock=lambda: now[0])
    assert deadline.allows(500)
    now[0] = 0.8
    assert deadline.remaining_ms() == pytest.approx(200)
    assert not deadline.allows(500)
    now[0] = 2.0
    assert deadline.remaining_s() == 0.0


def test_expansion_terms_come_from_feedback_not_the_query() -> None:
    feedback = [
        "Statins lower LDL cholesterol and reduce cardiovascular events.",
        "Cholesterol lowering with statins reduces myocardial infarction.",
        "Statin therapy and cholesterol: cardiovascular outcomes.",
    ]
    terms = expansion_terms("do statins help the heart", feedback)
    assert "cholesterol" in terms
    assert "statins" not in terms  # already in the query
    assert "the" not in terms
    assert expansion_terms("q", []) == []
    assert tokens("The LDL-cholesterol of 2 mice") == ["ldl-cholesterol", "mice"]


def test_query_stats_mix_latency_and_cache() -> None:
    rows = [("kb", "fast", 10.0, "miss", False)] * 6 + [
        ("kb", "deep", 300.0, "miss", True),
        ("kb2", "deep", 1.0, "hit", False),
        ("kb2", "balanced", 50.0, "miss", False),
        ("kb2", "fast", 0.5, "hit", False),
    ]
    stats = query_stats(rows)
    assert stats["queries"] == 10
    assert stats["modes"]["fast"]["share"] == 0.7
    assert stats["modes"]["deep"]["p95_ms"] == 300.0  # the cache hit is not a DEEP latency
    assert stats["cache_hit_rate"] == 0.2
    assert stats["degraded_rate"] == 0.1
    assert stats["queries_per_kb"] == {"kb": 7, "kb2": 3}
    assert query_stats([])["queries"] == 0
