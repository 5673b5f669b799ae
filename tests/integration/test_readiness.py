"""``GET /health/ready`` on the local app: embedded defaults, and the real servers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from functions.local_app import create_local_app
from shared.settings import Settings

pytestmark = pytest.mark.integration


def test_embedded_defaults_are_ready(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_local_app(make_settings())) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"database", "vector_store", "models"}
    assert all(c["status"] == "ok" for c in body["components"].values())


def test_postgres_and_redis_are_ready(
    make_settings: Callable[..., Settings], postgres_url: str, redis_url: str
) -> None:
    settings = make_settings(db={"url": postgres_url}, cache={"redis_url": redis_url})
    with TestClient(create_local_app(settings)) as client:
        body = client.get("/health/ready").json()
        metrics = client.get("/metrics").text
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "database": "ok",
        "vector_store": "ok",
        "models": "ok",
        "redis": "ok",
    }
    assert "quarry_db_pool_capacity 50.0" in metrics
    assert 'quarry_http_request_latency_ms{method="GET",quantile="0.99",route="/health/ready"}' in (
        metrics
    )


def test_redis_down_degrades_without_failing(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(cache={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_local_app(settings)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["redis"]["status"] == "down"


def test_database_down_is_503(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        db={"url": "postgresql+psycopg://nobody@127.0.0.1:1/none", "auto_migrate": False},
        observability={"health_timeout_s": 3},
    )
    with TestClient(create_local_app(settings)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["components"]["database"]["status"] == "down"
    assert body["components"]["database"]["error"]
