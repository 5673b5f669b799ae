"""One place maps errors to JSON: stable codes, request ids, no stack traces."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from functions.common.app_factory import create_app
from shared.errors import NotFound, RateLimited
from shared.settings import Settings

pytestmark = pytest.mark.unit

router = APIRouter()


class Item(BaseModel):
    name: str = Field(min_length=1)
    count: int


@router.get("/missing")
async def missing() -> None:
    raise NotFound("knowledge base 'x' does not exist", code="kb_not_found")


@router.get("/limited")
async def limited() -> None:
    raise RateLimited("slow down", retry_after_s=7)


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals")


@router.post("/items")
async def create_item(item: Item) -> Item:
    return item


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = make_settings(server={"max_body_bytes": 1000})
    with TestClient(create_app("test", [router], settings=settings)) as test_client:
        yield test_client


def test_domain_error_maps_to_its_status_and_code(client: TestClient) -> None:
    response = client.get("/missing")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "kb_not_found"
    assert body["message"] == "knowledge base 'x' does not exist"
    assert body["request_id"] == response.headers["x-request-id"]


def test_rate_limit_sets_retry_after(client: TestClient) -> None:
    response = client.get("/limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["code"] == "rate_limited"


def test_validation_errors_are_422_with_field_paths(client: TestClient) -> None:
    response = client.post("/items", json={"name": "", "count": "many"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    paths = {f["path"] for f in body["details"]["fields"]}
    assert paths == {"body.name", "body.count"}


def test_unexpected_error_is_a_plain_500_without_internals(client: TestClient) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal_error"
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]


def test_request_id_from_the_caller_is_kept(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"


def test_unsafe_request_id_is_replaced(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
    assert response.headers["x-request-id"] != "bad id\nwith newline"


def test_oversized_body_is_413(client: TestClient) -> None:
    response = client.post("/items", content=b"x" * 2000, headers={"content-type": "text/plain"})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/nope").json()["code"] == "not_found"
    assert client.delete("/items").json()["code"] == "method_not_allowed"


def test_request_metrics_are_recorded_per_route(client: TestClient) -> None:
    client.get("/missing")
    client.get("/boom")
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    assert metrics.counter_value("http_requests", method="GET", route="/missing", status="404")
    assert metrics.counter_value("http_errors", method="GET", route="/boom") == 1
    assert metrics.quantiles_ms("http_request_latency", method="GET", route="/boom")
