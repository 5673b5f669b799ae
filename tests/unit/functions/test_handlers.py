"""Each domain's Lambda handler answers a real-shaped HTTP API (v2.0) health event."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import pytest

from tests.events import FakeLambdaContext, load_event

pytestmark = pytest.mark.unit

DOMAINS = ["query", "workflows", "kb_admin", "auth", "ingestion", "tuning"]


@pytest.fixture(autouse=True)
def _local_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path))


def health_event(domain: str) -> dict[str, object]:
    event = copy.deepcopy(load_event("apigw_http_v2_get_health"))
    path = f"/v1/{domain.replace('_', '-')}/health"
    event["rawPath"] = path
    event["routeKey"] = f"GET {path}"
    event["requestContext"]["http"]["path"] = path  # type: ignore[index]
    event["requestContext"]["routeKey"] = f"GET {path}"  # type: ignore[index]
    return event


@pytest.mark.parametrize("domain", DOMAINS)
def test_handler_answers_its_health_route(domain: str) -> None:
    handler = importlib.import_module(f"functions.{domain}.handler")
    response = handler.lambda_handler(health_event(domain), FakeLambdaContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok", "service": domain}
    # The API Gateway request id becomes the request id of the response.
    assert response["headers"]["x-request-id"] == "Cj4FhiV2joEEJgw="


def test_unknown_route_is_a_json_404() -> None:
    handler = importlib.import_module("functions.query.handler")
    event = health_event("query")
    event["rawPath"] = "/v1/nothing-here"
    event["requestContext"]["http"]["path"] = "/v1/nothing-here"  # type: ignore[index]
    response = handler.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 404
    body = json.loads(response["body"])
    assert body["code"] == "not_found"
    assert body["request_id"] == "Cj4FhiV2joEEJgw="


def test_unsupported_event_shape_is_refused() -> None:
    handler = importlib.import_module("functions.tuning.handler")
    with pytest.raises(ValueError, match="does not handle"):
        handler.lambda_handler({"hello": "world"}, FakeLambdaContext())
