"""Each mode's retrieval plan, from the settings (budgets and top-k are settings; the pool
sizes and stages are what the benchmark on SciFact's train split chose)."""

from __future__ import annotations

from shared.query.retrieval import ModePlan
from shared.query.router import Mode
from shared.settings import QuerySettings


def plans_from_settings(query: QuerySettings) -> dict[Mode, ModePlan]:
    return {
        "fast": ModePlan(
            "fast", query.fast_budget_ms, query.fast_top_k, candidates=50, fusion="rrf"
        ),
        "balanced": ModePlan(
            "balanced",
            query.balanced_budget_ms,
            query.balanced_top_k,
            candidates=100,
            fusion="scores",
        ),
        "deep": ModePlan(
            "deep",
            query.deep_budget_ms,
            query.deep_top_k,
            candidates=200,
            fusion="scores",
            expand=True,
            rerank=True,
        ),
    }
