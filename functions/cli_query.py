"""``quarry query``: ask a KB, one question or a JSON Lines file of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from rich.console import Console

from functions.cli_kb import run_with_container
from shared.container import Container
from shared.errors import InvalidInput
from shared.query.service import QueryRequest

console = Console()

ModeOption = Annotated[str, typer.Option("--mode", help="auto, fast, balanced or deep.")]


def read_queries(path: Path) -> list[tuple[str, str]]:
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            queries.append((str(record["_id"]), str(record["text"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise typer.BadParameter(
                f'{path}:{number}: each line must be {{"_id": ..., "text": ...}}'
            ) from exc
    return queries


def query(
    text: Annotated[str | None, typer.Argument(help="The question.")] = None,
    kb: Annotated[str, typer.Option("--kb", help="The knowledge base.")] = "",
    mode: ModeOption = "auto",
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=100)] = None,
    queries: Annotated[Path | None, typer.Option(help="JSON Lines of {_id, text}.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    no_answer: Annotated[bool, typer.Option("--no-answer", help="Hits only.")] = False,
) -> None:
    """Ask a knowledge base; prints the answer with citations, or JSON (one line per query)."""
    if not kb:
        raise typer.BadParameter("--kb is required")
    if mode not in ("auto", "fast", "balanced", "deep"):
        raise typer.BadParameter("--mode must be auto, fast, balanced or deep")
    batch = read_queries(queries) if queries else None
    if batch is None and not text:
        raise typer.BadParameter("give a question, or --queries FILE.jsonl")

    async def work(container: Container, tenant_id: Any) -> list[dict[str, Any]]:
        items = batch or [("", text or "")]
        if len(items) > container.settings.query.max_batch_queries:
            raise InvalidInput("too many queries in one batch", code="batch_too_large")
        results = []
        for query_id, question in items:
            request = QueryRequest(
                question,
                mode=cast(Literal["auto", "fast", "balanced", "deep"], mode),
                top_k=top_k,
                answer=not no_answer,
            )
            result = await container.query_service.query(tenant_id, kb, request)
            if batch is not None:
                result = {"query_id": query_id, **result}
                typer.echo(json.dumps(result))
            results.append(result)
        return results

    results = run_with_container(work)
    if batch is not None:
        return
    result = results[0]
    if as_json:
        typer.echo(json.dumps(result))
        return
    console.print(
        f"[bold]{result['mode']}[/bold] (complexity {result['complexity']:.2f}, "
        f"{result['latency_ms']:.0f} ms, cache {result['cache']}"
        f"{', degraded' if result['degraded'] else ''})"
    )
    if result["answer"]:
        console.print(result["answer"])
        for c in result["citations"]:
            page = f" p. {c['page']}" if c["page"] else ""
            console.print(f"  [{c['number']}] {c['document']}{page}")
    for i, hit in enumerate(result["hits"], start=1):
        console.print(f"{i:2}. {hit['score']:.4f} {hit['document']}: {hit['text'][:100]!r}")
