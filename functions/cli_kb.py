"""``quarry kb``, ``quarry ingest`` and ``quarry doctor``: knowledge bases from the command line."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.container import Container
from shared.db.migrate import upgrade
from shared.errors import QuarryError
from shared.ingestion.doctor import diagnose
from shared.ingestion.service import Upload
from shared.kb.service import LOCAL_TENANT, KbSpec
from shared.settings import get_settings

T = TypeVar("T")

kb_app = typer.Typer(help="Create and list knowledge bases.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

BATCH_FILES = 32  # files per ingestion run: large enough to batch embeddings, small for progress
BATCH_BYTES = 64 * 1024 * 1024


def run_with_container(work: Callable[[Container, Any], Awaitable[T]]) -> T:
    """Runs ``work(container, tenant_id)`` on a migrated database; QuarryErrors exit cleanly."""
    settings = get_settings()

    async def main() -> T:
        if settings.db.auto_migrate:
            await asyncio.to_thread(upgrade, settings.database_url)
        container = Container(settings)
        try:
            tenant_id = await container.kb_repository.ensure_tenant(LOCAL_TENANT)
            return await work(container, tenant_id)
        finally:
            await container.aclose()

    try:
        return asyncio.run(main())
    except QuarryError as exc:
        err_console.print(f"[red]error[/red] ({exc.code}): {exc.message}")
        raise typer.Exit(2) from exc


@kb_app.command("create")
def kb_create(
    name: str,
    description: Annotated[str, typer.Option(help="What the KB holds.")] = "",
    chunk_size: Annotated[int, typer.Option(help="Tokens per chunk.")] = 256,
    chunk_overlap: Annotated[int, typer.Option(help="Tokens shared by neighbours.")] = 32,
) -> None:
    """Create a knowledge base (chunking and embedding model are fixed from then on)."""

    async def work(container: Container, tenant_id: Any) -> None:
        spec = KbSpec(
            name, description, chunk_size_tokens=chunk_size, chunk_overlap_tokens=chunk_overlap
        )
        kb = await container.kb_service.create(tenant_id, spec)
        console.print(f"created knowledge base [bold]{kb.name}[/bold] ({kb.id})")

    run_with_container(work)


@kb_app.command("list")
def kb_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List knowledge bases with their document and chunk counts."""

    async def work(container: Container, tenant_id: Any) -> list[dict[str, Any]]:
        rows = []
        for kb in await container.kb_service.list(tenant_id):
            stats = await container.kb_repository.stats(tenant_id, kb.id)
            rows.append(
                {
                    "name": kb.name,
                    "id": str(kb.id),
                    "documents": stats.documents,
                    "chunks": stats.chunks,
                    "version": kb.version,
                }
            )
        return rows

    rows = run_with_container(work)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("name", "documents", "chunks", "version", "id")
    for row in rows:
        table.add_row(
            row["name"], str(row["documents"]), str(row["chunks"]), str(row["version"]), row["id"]
        )
    console.print(table)


def collect_files(paths: list[Path]) -> Iterator[tuple[str, Path]]:
    """(document name, file): a file is named by its file name, a folder's files by their path
    relative to the folder. Hidden files and folders are skipped."""
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if not any(part.startswith(".") for part in relative.parts):
                    yield relative.as_posix(), file
        elif path.is_file():
            yield path.name, path
        else:
            raise typer.BadParameter(f"{path} does not exist")


def batches(files: list[tuple[str, Path]]) -> Iterator[list[tuple[str, Path]]]:
    batch: list[tuple[str, Path]] = []
    size = 0
    for name, file in files:
        file_size = file.stat().st_size
        if batch and (len(batch) >= BATCH_FILES or size + file_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((name, file))
        size += file_size
    if batch:
        yield batch


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursively).")],
    kb: Annotated[str, typer.Option("--kb", help="The knowledge base.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per file.")] = False,
) -> None:
    """Ingest files into a KB; exits 1 if any document failed."""
    files = list(collect_files(paths))
    if not files:
        err_console.print("nothing to ingest")
        raise typer.Exit(1)

    async def work(container: Container, tenant_id: Any) -> list[dict[str, Any]]:
        record = await container.kb_service.get(tenant_id, kb)
        service = container.ingestion_service
        results: list[dict[str, Any]] = []
        with Progress(
            TextColumn("ingesting"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=as_json or not sys.stderr.isatty(),
        ) as progress:
            task = progress.add_task("files", total=len(files))
            for batch in batches(files):
                uploads = []
                for name, file in batch:
                    upload = Upload(name, file.read_bytes(), mimetypes.guess_type(file.name)[0])
                    try:
                        service.check_upload(upload)
                    except QuarryError as exc:
                        results.append(
                            {
                                "file": name,
                                "status": "failed",
                                "code": exc.code,
                                "message": exc.message,
                            }
                        )
                        continue
                    uploads.append(upload)
                outcome = await service.ingest_uploads(tenant_id, record.id, uploads)
                results.extend(
                    await _file_results(container, tenant_id, record.id, uploads, outcome)
                )
                progress.advance(task, len(batch))
        return results

    results = run_with_container(work)
    _print_results(results, as_json)
    if any(r["status"] != "ready" for r in results):
        raise typer.Exit(1)


async def _file_results(
    container: Container, tenant_id: Any, kb_id: Any, uploads: list[Upload], outcome: Any
) -> list[dict[str, Any]]:
    """One row per file: a file's documents are one, or one per record of a JSON Lines file."""
    failures = {f["name"]: f for f in outcome.failures}
    run = outcome.run
    targets = run.state.get("targets", []) if run else []
    names = [t["name"] for t in targets] + [u.name for u in uploads]
    docs = {
        d.name: d for d in await container.kb_repository.documents_named(tenant_id, kb_id, names)
    }
    results: list[dict[str, Any]] = []
    for upload in uploads:
        if upload.name in outcome.unchanged:
            results.append({"file": upload.name, "status": "ready", "unchanged": True})
            continue
        if upload.name in failures:
            failure = failures[upload.name]
            results.append(
                {
                    "file": upload.name,
                    "status": "failed",
                    "code": failure["code"],
                    "message": failure["message"],
                }
            )
            continue
        own = [docs[t["name"]] for t in targets if t["source"] == upload.name and t["name"] in docs]
        if not own and upload.name in docs:
            own = [docs[upload.name]]
        ready = bool(own) and all(d.status == "ready" for d in own)
        entry: dict[str, Any] = {
            "file": upload.name,
            "status": "ready" if ready else "failed",
            "documents": len(own),
            "chunks": sum(d.chunk_count for d in own),
        }
        if not ready:
            failed = next((d for d in own if d.status != "ready"), None)
            entry["code"] = (failed.error_code if failed else None) or (run and run.error_code)
            entry["message"] = (failed.error_message if failed else None) or (
                run and run.error_message
            )
        results.append(entry)
    return results


def _print_results(results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for row in results:
            typer.echo(json.dumps(row))
        return
    table = Table("file", "status", "chunks", "detail")
    for row in results:
        style = "green" if row["status"] == "ready" else "red"
        detail = "unchanged" if row.get("unchanged") else row.get("code") or ""
        if row.get("message"):
            detail = f"{detail}: {row['message']}"
        table.add_row(
            row["file"], f"[{style}]{row['status']}[/{style}]", str(row.get("chunks", "")), detail
        )
    console.print(table)
    failed = sum(1 for r in results if r["status"] != "ready")
    console.print(f"{len(results) - failed} ready, {failed} failed")


def doctor(
    kb: Annotated[str | None, typer.Option("--kb", help="One KB (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Report orphans (vectors without chunks, chunks without vectors, stale chunk rows) and
    documents stuck in processing; exits 1 if any."""

    async def work(container: Container, tenant_id: Any) -> list[Any]:
        names = [kb] if kb else [k.name for k in await container.kb_service.list(tenant_id)]
        return [
            await diagnose(
                container.kb_service,
                container.kb_repository,
                container.vector_store,
                tenant_id,
                name,
            )
            for name in names
        ]

    reports = run_with_container(work)
    for report in reports:
        row = {
            "kb": report.kb,
            "healthy": report.healthy,
            "vectors": report.vectors,
            "chunks": report.chunks,
            "orphan_vectors": report.orphan_vectors,
            "chunks_without_vectors": report.chunks_without_vectors,
            "stale_chunk_rows": report.stale_chunk_rows,
            "stuck_documents": report.stuck_documents,
        }
        if as_json:
            typer.echo(json.dumps(row))
        else:
            mark = "[green]ok[/green]" if report.healthy else "[red]problems[/red]"
            console.print(f"{report.kb}: {mark} ({report.chunks} chunks, {report.vectors} vectors)")
            for key in (
                "orphan_vectors",
                "chunks_without_vectors",
                "stale_chunk_rows",
                "stuck_documents",
            ):
                if row[key]:
                    console.print(f"  {key}: {len(row[key])}: {', '.join(row[key][:5])}")
    if not all(r.healthy for r in reports):
        raise typer.Exit(1)
