"""Lambda entry point of the auth domain: its HTTP routes, and the HTTP API's Lambda authorizer.

The authorizer (payload 2.0, simple responses) checks the request's access token or API key and
answers ``{"isAuthorized": true, "context": {tenant_id, principal_kind, principal_id, role,
scopes}}``; the domain functions trust only that context. Any failure answers
``{"isAuthorized": false}`` (API Gateway then refuses the request) and is logged with its reason,
never with the credential.
"""

from __future__ import annotations

import logging
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.auth.app import app
from functions.common.lambda_entry import is_authorizer_event, make_lambda_handler, run_async
from shared.auth.authenticator import principal_context
from shared.container import Container
from shared.errors import QuarryError

log = logging.getLogger(__name__)


async def authorize(container: Container, headers: dict[str, str]) -> dict[str, Any]:
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        principal = await container.auth.authenticator.authenticate(
            lowered.get("authorization"), lowered.get("x-api-key")
        )
    except QuarryError as exc:
        log.info("request not authorized: %s", exc.code, extra={"code": exc.code})
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": principal_context(principal)}


def on_other_event(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    if not is_authorizer_event(event):
        raise ValueError("quarry-auth handles HTTP API requests and authorizer requests only")
    container = app.state.container_provider.get()
    return run_async(authorize(container, event.get("headers") or {}))


lambda_handler = make_lambda_handler(app, "auth", on_other_event=on_other_event)
