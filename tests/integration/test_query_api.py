"""The query API end to end on the local app: routing, modes, citations, cache, stats."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from functions.local_app import create_local_app
from shared.settings import Settings
from tests.fixtures.auth import sign_up

pytestmark = pytest.mark.integration

DOCS = {
    "travel.md": b"# Travel\n\n## Hotels\nThe nightly hotel budget in Zurich is 240 francs, "
    b"breakfast included.\n\n## Flights\nEconomy class is booked for flights under six hours.\n",
    "security.txt": b"Laptops must use full-disk encryption. Passwords rotate every 90 days.",
    "kitchen.txt": b"The office kitchen is cleaned on Fridays. Fresh fruit arrives on Mondays.",
}


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_local_app(make_settings())) as test_client:
        test_client.headers.update(sign_up(test_client))
        assert test_client.post("/v1/kbs", json={"name": "office"}).status_code == 201
        files = [("files", (name, data, "text/plain")) for name, data in DOCS.items()]
        upload = test_client.post("/v1/kbs/office/documents?wait=true", files=files)
        assert upload.status_code == 200, upload.text
        yield test_client


@pytest.mark.parametrize("mode", ["fast", "balanced", "deep"])
def test_each_mode_finds_the_passage_and_cites_it(client: TestClient, mode: str) -> None:
    response = client.post(
        "/v1/kbs/office/query", json={"query": "What is the hotel budget in Zurich?", "mode": mode}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == mode
    assert body["hits"][0]["document"] == "travel.md"
    assert "240 francs" in body["answer"]
    assert body["citations"][0]["document"] == "travel.md"
    assert body["cache"] == "miss"
    assert body["degraded"] is False
    assert 0 <= body["complexity"] <= 1
    assert len(body["hits"]) <= {"fast": 5, "balanced": 10, "deep": 15}[mode]


def test_auto_mode_routes_by_complexity(client: TestClient) -> None:
    simple = client.post("/v1/kbs/office/query", json={"query": "kitchen cleaning"}).json()
    hard = client.post(
        "/v1/kbs/office/query",
        json={
            "query": "Compare the laptop encryption rules with the password rotation policy, "
            "and explain why both matter for security audits after an incident."
        },
    ).json()
    assert simple["mode"] == "fast"
    assert hard["mode"] == "deep"
    assert hard["complexity"] > simple["complexity"]


def test_repeated_query_hits_the_cache_until_the_kb_changes(client: TestClient) -> None:
    body = {"query": "password rotation", "mode": "fast"}
    assert client.post("/v1/kbs/office/query", json=body).json()["cache"] == "miss"
    second = client.post("/v1/kbs/office/query", json=body).json()
    assert second["cache"] == "hit"
    assert second["hits"][0]["document"] == "security.txt"
    client.post(
        "/v1/kbs/office/documents?wait=true",
        files={"files": ("new.txt", b"Badges are renewed yearly.", "text/plain")},
    )
    assert client.post("/v1/kbs/office/query", json=body).json()["cache"] == "miss"
    stats = client.get("/v1/stats/cache").json()
    assert stats


def test_filters_top_k_and_bad_queries(client: TestClient) -> None:
    filtered = client.post(
        "/v1/kbs/office/query",
        json={"query": "budget", "filters": {"documents": ["kitchen.txt"]}, "top_k": 2},
    ).json()
    assert {h["document"] for h in filtered["hits"]} <= {"kitchen.txt"}
    bad = client.post("/v1/kbs/office/query", json={"query": "x", "filters": {"owner": "me"}})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_filter")
    empty = client.post("/v1/kbs/office/query", json={"query": "   "})
    assert empty.json()["code"] == "empty_query"
    missing = client.post("/v1/kbs/nope/query", json={"query": "x"})
    assert missing.status_code == 404


def test_query_stats_report_the_mix(client: TestClient) -> None:
    for mode in ("fast", "fast", "deep"):
        client.post("/v1/kbs/office/query", json={"query": f"fruit {mode}", "mode": mode})
    stats = client.get("/v1/stats/queries?window_hours=1").json()
    assert stats["queries"] == 3
    assert stats["modes"]["fast"]["queries"] == 2
    assert stats["modes"]["deep"]["p95_ms"] is not None
    assert stats["queries_per_kb"] == {"office": 3}


def test_postgres_and_redis_share_the_cache_across_instances(
    make_settings: Callable[..., Settings], postgres_url: str, redis_url: str
) -> None:
    """An entry used three times is promoted to Redis; a second server (cold L1) hits it."""
    settings = make_settings(db={"url": postgres_url}, cache={"redis_url": redis_url})
    body = {"query": "When does fresh fruit arrive?", "mode": "fast"}
    with TestClient(create_local_app(settings)) as first:
        headers = sign_up(first)
        first.headers.update(headers)
        kb_name = "office-pg"
        first.post("/v1/kbs", json={"name": kb_name})
        files = [("files", (name, data, "text/plain")) for name, data in DOCS.items()]
        first.post(f"/v1/kbs/{kb_name}/documents?wait=true", files=files)
        outcomes = [first.post(f"/v1/kbs/{kb_name}/query", json=body).json() for _ in range(3)]
        assert [o["cache"] for o in outcomes] == ["miss", "hit", "hit"]
        assert outcomes[0]["hits"][0]["document"] == "kitchen.txt"
    with TestClient(create_local_app(settings)) as second:
        second.headers.update(headers)  # a token of one instance is valid on every instance
        again = second.post(f"/v1/kbs/{kb_name}/query", json=body).json()
        assert again["cache"] == "hit"
        stats = second.get("/v1/stats/cache").json()
        assert stats["overall"]["l2"]["hits"] == 1
