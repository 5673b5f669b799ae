"""``quarry tune``: re-fit the router's complexity thresholds to the logged queries."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from functions.cli_kb import run_with_container
from shared.container import Container
from shared.tuning.thresholds import TuningDecision

console = Console()

_STYLE = {"applied": "green", "skipped": "yellow", "refused": "red"}


def tune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what a run would decide; store nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Move the FAST/DEEP thresholds toward the target mode mix (audited; bounded per run)."""

    async def work(container: Container, _tenant_id: Any) -> TuningDecision:
        service = container.tuning_service
        if dry_run:
            return await service.preview()
        return await service.run(trigger="cli")

    decision = run_with_container(work)
    if as_json:
        typer.echo(json.dumps({**decision.to_dict(), "dry_run": dry_run}))
        return
    style = _STYLE[decision.outcome]
    label = f"{decision.outcome} (dry run)" if dry_run else decision.outcome
    console.print(f"[{style}]{label}[/{style}]: {decision.reason}")
    thresholds = decision.thresholds
    console.print(f"thresholds: fast {thresholds.fast:.3f}, deep {thresholds.deep:.3f}")
    mix = decision.details.get("mix_projected")
    if mix:
        shares = ", ".join(f"{mode} {share:.0%}" for mode, share in mix.items())
        console.print(f"projected mix: {shares}")
