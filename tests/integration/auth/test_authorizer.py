"""The HTTP API's Lambda authorizer, with real-shaped authorizer events, and the domain
functions trusting only the context it returns."""

from __future__ import annotations

import copy
import importlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from functions.auth.handler import authorize
from shared.auth.authenticator import principal_context, principal_from_context
from shared.auth.rbac import Principal, Role
from shared.container import Container
from shared.db.migrate import upgrade
from shared.settings import Settings
from tests.events import FakeLambdaContext, load_event
from tests.fixtures.auth import minted_bearer

pytestmark = pytest.mark.integration


@pytest.fixture
async def container(make_settings: Callable[..., Settings]) -> AsyncIterator[Container]:
    settings = make_settings()
    upgrade(settings.database_url)
    built = Container(settings)
    try:
        yield built
    finally:
        await built.aclose()


def authorizer_event(**headers: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("apigw_authorizer_v2_request"))
    event["headers"].update(headers)
    return event


async def test_a_valid_access_token_is_authorized_with_its_principal(container: Container) -> None:
    tenant = uuid.uuid4()
    header = minted_bearer(container.settings, role=Role.MEMBER, tenant_id=tenant)
    answer = await authorize(
        container, authorizer_event(authorization=header["Authorization"])["headers"]
    )
    assert answer["isAuthorized"] is True
    context = answer["context"]
    assert all(isinstance(v, str) for v in context.values())  # simple responses: flat strings
    principal = principal_from_context(context)
    assert (principal.kind, principal.tenant_id, principal.role) == ("user", tenant, Role.MEMBER)


async def test_an_api_key_is_authorized_from_either_header(container: Container) -> None:
    tenant = await container.kb_repository.ensure_tenant(f"t-{uuid.uuid4().hex[:8]}")
    admin = Principal("user", tenant, Role.ADMIN, frozenset({"*"}), user_id=uuid.uuid4())
    created = await container.auth.api_keys.create(admin, name="ci", scopes=["kb:read"])
    for headers in ({"X-Api-Key": created.key}, {"Authorization": f"Bearer {created.key}"}):
        answer = await authorize(container, headers)
        assert answer["isAuthorized"] is True
        assert answer["context"]["principal_kind"] == "api_key"
        assert answer["context"]["scopes"] == "kb:read"
    await container.auth.api_keys.revoke(admin, created.info.id)
    assert await authorize(container, {"x-api-key": created.key}) == {"isAuthorized": False}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer not-a-token"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"x-api-key": "qk_abcdefgh_" + "A" * 43},
    ],
)
async def test_anything_else_is_refused(container: Container, headers: dict[str, str]) -> None:
    assert await authorize(container, headers) == {"isAuthorized": False}


def test_the_lambda_handler_answers_authorizer_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path))
    handler = importlib.import_module("functions.auth.handler")
    header = minted_bearer(Settings(_env_file=None))  # type: ignore[call-arg]
    event = authorizer_event(authorization=header["Authorization"])
    answer = handler.lambda_handler(event, FakeLambdaContext())
    assert answer["isAuthorized"] is True
    assert answer["context"]["role"] == "owner"
    refused = handler.lambda_handler(authorizer_event(), FakeLambdaContext())
    assert refused == {"isAuthorized": False}


def test_domain_functions_trust_the_authorizer_context_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path))
    handler = importlib.import_module("functions.query.handler")
    event = copy.deepcopy(load_event("apigw_http_v2_get_health"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/stats/cache"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /v1/stats/cache"
    # A valid token in the header means nothing inside Lambda: only the authorizer's context.
    event["headers"].update(minted_bearer(Settings(_env_file=None)))  # type: ignore[call-arg]
    response = handler.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 401
    principal = Principal("user", uuid.uuid4(), Role.ADMIN, frozenset({"*"}), user_id=uuid.uuid4())
    event["requestContext"]["authorizer"] = {"lambda": principal_context(principal)}
    response = handler.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200, response["body"]
    assert "hit_rate" in json.loads(response["body"])["overall"]
    event["requestContext"]["authorizer"]["lambda"]["role"] = "viewer"
    response = handler.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 403
