"""Usage figures of a tenant's queries over a window: mode mix, latency per mode, cache hits."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from shared.observability.metrics import quantile


def query_stats(rows: list[tuple[str, str, float, str, bool]]) -> dict[str, Any]:
    """``rows``: (kb name, mode, latency ms, cache outcome, degraded)."""
    total = len(rows)
    modes = Counter(mode for _, mode, _, _, _ in rows)
    latencies: dict[str, list[float]] = defaultdict(list)
    for _, mode, latency, cache, _ in rows:
        if cache != "hit":  # a cache hit says nothing about what the mode costs
            latencies[mode].append(latency)
    per_mode = {}
    for mode in ("fast", "balanced", "deep"):
        values = sorted(latencies.get(mode, []))
        per_mode[mode] = {
            "queries": modes.get(mode, 0),
            "share": round(modes.get(mode, 0) / total, 4) if total else 0.0,
            "p50_ms": round(quantile(values, 0.5), 2) if values else None,
            "p95_ms": round(quantile(values, 0.95), 2) if values else None,
        }
    hits = sum(1 for _, _, _, cache, _ in rows if cache == "hit")
    return {
        "queries": total,
        "modes": per_mode,
        "cache_hit_rate": round(hits / total, 4) if total else 0.0,
        "degraded_rate": round(sum(1 for r in rows if r[4]) / total, 4) if total else 0.0,
        "queries_per_kb": dict(Counter(kb for kb, _, _, _, _ in rows).most_common()),
    }
