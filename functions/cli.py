"""The ``quarry`` command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from functions.cli_auth import api_key_app, user_app
from functions.cli_kb import doctor, ingest, kb_app
from functions.cli_query import query
from functions.cli_tune import tune
from functions.cli_workflow import workflow_app
from shared.settings import get_settings

app = typer.Typer(
    help="Quarry: a serverless RAG and AI-workflow platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(kb_app, name="kb")
app.add_typer(user_app, name="user")
app.add_typer(api_key_app, name="api-key")
app.add_typer(workflow_app, name="workflow")
app.command()(ingest)
app.command()(doctor)
app.command()(query)
app.command()(tune)

DEFAULT_REFERENCE = Path("docs/configuration.md")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Run every domain in one local server (embedded defaults unless configured)."""
    import uvicorn

    from functions.local_app import create_local_app

    settings = get_settings()
    uvicorn.run(
        create_local_app(settings),
        host=host or settings.server.host,
        port=port or settings.server.port,
        log_config=None,
    )


@app.command("gpu-endpoint")
def gpu_endpoint(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8081).")] = None,
) -> None:
    """Run the model endpoint (embeddings, reranking, OCR) here: CUDA when present, else CPU."""
    from gpu_endpoint.__main__ import serve as serve_endpoint

    serve_endpoint(host=host, port=port)


@app.command()
def migrate(
    action: Annotated[str, typer.Argument(help="upgrade or downgrade")] = "upgrade",
    revision: Annotated[str | None, typer.Option(help="Target (default head / base).")] = None,
) -> None:
    """Apply or roll back database migrations."""
    from shared.container import database_password
    from shared.db.migrate import downgrade, upgrade

    settings = get_settings()
    url, password = settings.database_url, database_password(settings)
    if action == "upgrade":
        upgrade(url, revision or "head", password=password)
    elif action == "downgrade":
        downgrade(url, revision or "base", password=password)
    else:
        raise typer.BadParameter("action must be upgrade or downgrade")
    typer.echo(f"database {action}d to {revision or ('head' if action == 'upgrade' else 'base')}")


@app.command()
def health() -> None:
    """Check every dependency once; exit 1 when a required one is down."""
    from shared.container import Container
    from shared.health import check_readiness

    async def run() -> bool:
        container = Container(get_settings())
        try:
            report = await check_readiness(
                container.health_checks(), container.settings.observability.health_timeout_s
            )
        finally:
            await container.aclose()
        for c in report.components:
            typer.echo(f"{c.name:14} {c.status:5} {c.latency_ms:8.1f} ms  {c.error or ''}")
        return report.ready

    if not asyncio.run(run()):
        raise typer.Exit(1)


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as JSON (secrets masked)."""
    typer.echo(json.dumps(get_settings().model_dump(mode="json"), indent=2))


@config_app.command("docs")
def config_docs(
    output: Annotated[Path, typer.Option(help="Where to write.")] = DEFAULT_REFERENCE,
    check: Annotated[bool, typer.Option(help="Exit 1 if the file is stale.")] = False,
) -> None:
    """Write the configuration reference generated from the settings model."""
    from shared.settings_reference import render_reference

    text = render_reference()
    if check:
        if not output.exists() or output.read_text(encoding="utf-8") != text:
            typer.echo(f"{output} is stale: run `quarry config docs`", err=True)
            raise typer.Exit(1)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")


def main() -> None:
    app(prog_name="quarry")


if __name__ == "__main__":
    main()
