"""``quarry user`` and ``quarry api-key``: credentials for the CLI's tenant, so the HTTP API can
be used on the knowledge bases the CLI manages (``POST /v1/auth/register`` makes new tenants)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from functions.cli_kb import run_with_container
from shared.auth.rbac import Role, operator_principal
from shared.container import Container

user_app = typer.Typer(help="Users of the CLI's tenant.", no_args_is_help=True)
api_key_app = typer.Typer(help="API keys of the CLI's tenant.", no_args_is_help=True)


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="The user's email (their sign-in name).")],
    role: Annotated[Role, typer.Option(help="owner, admin, member or viewer.")] = Role.MEMBER,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="QUARRY_NEW_USER_PASSWORD",
            help="Prompted for when not given (or set QUARRY_NEW_USER_PASSWORD).",
        ),
    ] = "",
) -> None:
    """Add a user who signs in with ``POST /v1/auth/token``."""

    async def work(container: Container, tenant_id: Any) -> None:
        user = await container.auth.users.create_user(
            operator_principal(tenant_id), email=email, password=password, role=role
        )
        typer.echo(f"created {user.role} {user.email} ({user.id})")

    run_with_container(work)


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    role: Annotated[Role, typer.Option(help="The key's role.")] = Role.MEMBER,
    scope: Annotated[
        list[str] | None, typer.Option(help="Repeat to narrow the key, e.g. kb:read.")
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API key and print it (shown once; send it as ``X-API-Key``)."""

    async def work(container: Container, tenant_id: Any) -> None:
        created = await container.auth.api_keys.create(
            operator_principal(tenant_id),
            name=name,
            scopes=scope or ["*"],
            role=role,
            ttl_s=expires_in_days * 86400 if expires_in_days else None,
        )
        if as_json:
            info = created.info
            typer.echo(
                json.dumps(
                    {"id": str(info.id), "key": created.key, "prefix": info.prefix,
                     "role": info.role.value, "scopes": sorted(info.scopes)}
                )
            )  # fmt: skip
        else:
            typer.echo(created.key)

    run_with_container(work)
