"""Usage figures of a tenant's workflow runs over a window."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from shared.db.workflow_repository import RunSample
from shared.observability.metrics import quantile
from shared.workflows.engine import FINISHED_RUN_STATUSES, RunStatus


def workflow_stats(
    runs: Sequence[RunSample], tool_calls: Sequence[Sequence[str]]
) -> dict[str, Any]:
    """Runs by workflow and status, success rate (succeeded / finished) and p50/p95 duration of
    finished runs (per workflow and overall), and how often each tool was called."""
    by_workflow: dict[str, list[RunSample]] = defaultdict(list)
    for run in runs:
        by_workflow[run.workflow].append(run)
    return {
        **_figures(runs),
        "workflows": {name: _figures(samples) for name, samples in sorted(by_workflow.items())},
        "tool_calls": dict(Counter(name for calls in tool_calls for name in calls).most_common()),
    }


def _figures(runs: Sequence[RunSample]) -> dict[str, Any]:
    finished = [run for run in runs if run.status in FINISHED_RUN_STATUSES]
    durations = sorted(run.duration_ms for run in finished if run.duration_ms is not None)
    succeeded = sum(1 for run in finished if run.status == RunStatus.SUCCEEDED)
    return {
        "runs": len(runs),
        "by_status": dict(sorted(Counter(run.status for run in runs).items())),
        "success_rate": round(succeeded / len(finished), 4) if finished else None,
        "p50_ms": round(quantile(durations, 0.5), 2) if durations else None,
        "p95_ms": round(quantile(durations, 0.95), 2) if durations else None,
    }
