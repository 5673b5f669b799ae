"""``quarry workflow validate``, ``compile`` and ``run``: workflow definitions from files.

``run`` stores the file's definition in the CLI's tenant (a new version only when it changed),
runs it in this process until it finishes or pauses for an approval, and prints the run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from functions.cli_kb import run_with_container
from functions.workflows.schemas import NodeRunOut, RunDetail, RunOut
from shared.auth.rbac import operator_principal
from shared.container import Container
from shared.errors import QuarryError
from shared.settings import get_settings
from shared.workflows.service import RunDetails

workflow_app = typer.Typer(help="Validate and run workflow definitions.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

FileArgument = Annotated[
    Path, typer.Argument(help="A definition, JSON or YAML.", exists=True, dir_okay=False)
]


def read_definition(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from exc


def print_error(exc: QuarryError) -> None:
    err_console.print(f"[red]error[/red] ({exc.code}): {exc.message}")
    for problem in exc.details.get("errors", []):
        where = " ".join(
            str(part)
            for part in (problem.get("node"), problem.get("loc"), problem.get("field"))
            if part
        )
        err_console.print(f"  - {problem.get('code', 'invalid')} {where}: {problem['message']}")


@workflow_app.command("validate")
def validate(file: FileArgument) -> None:
    """Check a definition against this deployment (limits, LLM, tools) without running it;
    exits 2 listing every problem."""
    source = read_definition(file)

    async def check() -> Any:
        container = Container(get_settings())
        try:
            return container.workflow_service.validate(source)
        finally:
            await container.aclose()

    try:
        definition = asyncio.run(check())
    except QuarryError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    nodes = len(definition.graph.node_ids())
    console.print(f"[green]valid[/green]: workflow [bold]{definition.name}[/bold], {nodes} nodes")


@workflow_app.command("compile")
def compile_definition(
    file: FileArgument,
    function: Annotated[
        str | None,
        typer.Option(
            help="The function the tasks invoke (default: QUARRY_AWS__WORKFLOW_FUNCTION, else "
            "the placeholder ${WorkflowFunction})."
        ),
    ] = None,
) -> None:
    """Print the Amazon States Language the definition compiles to (one Step Functions state
    machine); exits 2 listing every problem of an invalid definition."""
    from shared.workflows.asl import compile_workflow

    source = read_definition(file)
    settings = get_settings()

    async def check() -> Any:
        container = Container(settings)
        try:
            return container.workflow_service.validate(source)
        finally:
            await container.aclose()

    try:
        definition = asyncio.run(check())
        asl = compile_workflow(
            definition,
            step_function_arn=function or settings.aws.workflow_function or "${WorkflowFunction}",
            default_timeout_s=settings.workflows.default_node_timeout_s,
            default_approval_timeout_s=settings.workflows.default_approval_timeout_s,
        )
    except QuarryError as exc:
        print_error(exc)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(asl, indent=2))


@workflow_app.command("run")
def run(
    file: FileArgument,
    input_json: Annotated[
        str, typer.Option("--input", help="The run input, a JSON object.")
    ] = "{}",
    as_json: Annotated[bool, typer.Option("--json", help="The run as JSON.")] = False,
) -> None:
    """Store the definition (a new version if it changed) and run it here; exits 1 unless the
    run succeeded or waits for an approval."""
    source = read_definition(file)
    try:
        run_input = json.loads(input_json)
    except ValueError as exc:
        raise typer.BadParameter(f"--input is not JSON: {exc}") from exc

    async def work(container: Container, tenant_id: Any) -> RunDetails:
        service = container.workflow_service
        actor = operator_principal(tenant_id)
        workflow = await service.ensure_version(actor, source)
        started = await service.start_run(actor, workflow.name, run_input, wait_s=None)
        return await service.get_run(actor, started.id)

    details = run_with_container(work)
    run_record = details.run
    if as_json:
        body = RunDetail(
            **RunOut.model_validate(run_record).model_dump(),
            nodes=[NodeRunOut.model_validate(n) for n in details.nodes],
        )
        typer.echo(body.model_dump_json())
    else:
        _print_run(details)
    if run_record.status not in ("succeeded", "waiting_approval"):
        raise typer.Exit(1)


def _print_run(details: RunDetails) -> None:
    run = details.run
    colour = {"succeeded": "green", "waiting_approval": "yellow"}.get(run.status, "red")
    duration = f", {run.duration_ms:.0f} ms" if run.duration_ms is not None else ""
    console.print(
        f"run {run.id} of [bold]{run.workflow_name}[/bold] v{run.workflow_version}: "
        f"[{colour}]{run.status}[/{colour}]{duration}"
    )
    for node in details.nodes:
        timing = f"{node.duration_ms:8.1f} ms" if node.duration_ms is not None else " " * 11
        error = f"  {node.error_code}: {node.error_message}" if node.error_code else ""
        console.print(f"  {node.node_key:32} {node.status:20} {timing}{error}")
    if run.status == "waiting_approval":
        console.print(f"waiting for approval: POST /v1/workflow-runs/{run.id}/approve (or /reject)")
    elif run.error_code:
        console.print(f"[red]{run.error_code}[/red]: {run.error_message}")
    else:
        console.print_json(json.dumps(run.output, default=str))
