"""The workflows HTTP API on the local app (embedded defaults): definitions in JSON and YAML,
runs with approvals, cancel and resume, stats, tenant isolation and roles."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from functions.local_app import create_local_app
from shared.auth.rbac import Role
from shared.settings import Settings
from tests.fixtures.auth import minted_bearer, sign_up

pytestmark = pytest.mark.integration

SUMMARY = {
    "name": "summary",
    "description": "Counts the words of a text, after a human check",
    "input": {"text": {"type": "string"}},
    "nodes": [
        {
            "id": "count",
            "type": "tool",
            "tool": "text_word_count",
            "input": {"text": "{{ input.text }}"},
        },
        {
            "id": "check",
            "type": "approval",
            "message": "{{ nodes.count.output.words }} words: fine?",
            "depends_on": ["count"],
        },
        {
            "id": "report",
            "type": "transform",
            "template": "{{ nodes.count.output.words }} words",
            "depends_on": ["check"],
        },
    ],
    "output": {"report": "$.nodes.report.output"},
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_local_app(settings)) as test_client:
        test_client.headers.update(sign_up(test_client))
        yield test_client


def create(client: TestClient, definition: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/workflows", json=definition)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_definition_lifecycle(client: TestClient) -> None:
    created = create(client, SUMMARY)
    assert (created["name"], created["version"]) == ("summary", 1)
    assert created["definition"]["nodes"][0]["tool"] == "text_word_count"
    assert client.post("/v1/workflows", json=SUMMARY).json()["code"] == "workflow_exists"
    updated = client.put(
        "/v1/workflows/summary",
        content=yaml.safe_dump({**SUMMARY, "description": "v2"}),
        headers={"content-type": "application/yaml"},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    assert client.get("/v1/workflows/summary?version=1").json()["description"].startswith("Counts")
    listed = client.get("/v1/workflows").json()["items"]
    assert [(w["name"], w["version"]) for w in listed] == [("summary", 2)]
    assert client.delete("/v1/workflows/summary").status_code == 204
    missing = client.get("/v1/workflows/summary")
    assert (missing.status_code, missing.json()["code"]) == (404, "workflow_not_found")


def test_invalid_definitions_are_422_with_every_error(client: TestClient) -> None:
    bad = {
        "name": "bad",
        "nodes": [
            {"id": "a", "type": "transform", "jmespath": "nodes.ghost.output"},
            {"id": "b", "type": "tool", "tool": "no_such_tool"},
            {"id": "c", "type": "agent", "prompt": "hi"},
        ],
    }
    response = client.post("/v1/workflows", json=bad)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_workflow"
    codes = {e["code"] for e in body["details"]["errors"]}
    assert codes == {"unknown_reference", "unknown_tool", "llm_not_configured"}
    garbage = client.post(
        "/v1/workflows", content=b"{not: [json", headers={"content-type": "text/plain"}
    )
    assert (garbage.status_code, garbage.json()["code"]) == (422, "invalid_workflow")


def wait_for(client: TestClient, run_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/workflow-runs/{run_id}").json()
        if body["status"] == status:
            return body
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {status}: {body}")


def test_run_with_approval_over_http(client: TestClient) -> None:
    create(client, SUMMARY)
    started = client.post("/v1/workflows/summary/runs", json={"input": {"text": "One two three."}})
    assert started.status_code == 202, started.text
    run = wait_for(client, started.json()["id"], "waiting_approval")
    assert [(n["node_key"], n["status"]) for n in run["nodes"]] == [
        ("count", "succeeded"),
        ("check", "waiting_approval"),
    ]
    assert run["nodes"][1]["input"] == {"message": "3 words: fine?"}
    approved = client.post(
        f"/v1/workflow-runs/{run['id']}/approve", json={"comment": "fine", "wait": True}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "succeeded"
    assert approved.json()["output"] == {"report": "3 words"}
    again = client.post(f"/v1/workflow-runs/{run['id']}/approve", json={})
    assert (again.status_code, again.json()["code"]) == (409, "run_not_waiting")
    runs = client.get("/v1/workflows/summary/runs").json()["items"]
    assert [r["id"] for r in runs] == [run["id"]]
    audit = client.get("/v1/audit?action=workflow_run.approve").json()["items"]
    assert [e["resource"] for e in audit] == [f"workflow_run:{run['id']}"]


def test_reject_cancel_and_resume(client: TestClient) -> None:
    create(client, SUMMARY)
    start = {"input": {"text": "a b"}, "wait": True}
    first = client.post("/v1/workflows/summary/runs", json=start).json()
    assert first["status"] == "waiting_approval"
    rejected = client.post(f"/v1/workflow-runs/{first['id']}/reject", json={"wait": True}).json()
    assert (rejected["status"], rejected["error_code"]) == ("failed", "approval_rejected")
    resumed = client.post(f"/v1/workflow-runs/{first['id']}/resume", json={"wait": True}).json()
    assert resumed["status"] == "waiting_approval"  # asks again; count is not run again
    second = client.post("/v1/workflows/summary/runs", json=start).json()
    cancelled = client.post(f"/v1/workflow-runs/{second['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    not_resumable = client.post(f"/v1/workflow-runs/{second['id']}/resume", json={})
    assert (not_resumable.status_code, not_resumable.json()["code"]) == (409, "run_not_resumable")
    bad_input = client.post("/v1/workflows/summary/runs", json={"input": {"text": 3}})
    assert (bad_input.status_code, bad_input.json()["code"]) == (422, "invalid_workflow_input")


def test_stats(client: TestClient) -> None:
    definition = {
        "name": "count",
        "input": {"text": {"type": "string"}},
        "nodes": [
            {
                "id": "c",
                "type": "tool",
                "tool": "text_word_count",
                "input": {"text": "$.input.text"},
            }
        ],
    }
    create(client, definition)
    for text in ("a", "b c"):
        run = client.post("/v1/workflows/count/runs", json={"input": {"text": text}, "wait": True})
        assert run.json()["status"] == "succeeded"
    stats = client.get("/v1/stats/workflows").json()
    assert stats["runs"] == 2
    assert stats["success_rate"] == 1.0
    assert stats["workflows"]["count"]["by_status"] == {"succeeded": 2}
    assert stats["tool_calls"] == {"text_word_count": 2}
    assert stats["p95_ms"] is not None
    metrics = client.get("/metrics").text
    assert 'quarry_workflow_tool_calls_total{tool="text_word_count"} 2.0' in metrics


def test_tenant_isolation_and_roles(client: TestClient, settings: Settings) -> None:
    create(client, SUMMARY)
    run = client.post(
        "/v1/workflows/summary/runs", json={"input": {"text": "x"}, "wait": True}
    ).json()
    other = sign_up(client, email="other@example.com", tenant="globex")
    hidden = client.get(f"/v1/workflow-runs/{run['id']}", headers=other)
    assert (hidden.status_code, hidden.json()["code"]) == (404, "run_not_found")
    for action in ("approve", "reject", "cancel", "resume"):
        response = client.post(f"/v1/workflow-runs/{run['id']}/{action}", json={}, headers=other)
        assert response.status_code == 404, action
    assert client.get("/v1/workflows", headers=other).json()["items"] == []
    assert client.get("/v1/workflows/summary/runs", headers=other).status_code == 404

    tenant_id = client.get("/v1/auth/me").json()["tenant_id"]
    viewer = minted_bearer(settings, role=Role.VIEWER, tenant_id=tenant_id)
    assert client.get(f"/v1/workflow-runs/{run['id']}", headers=viewer).status_code == 200
    denied = client.post("/v1/workflows/summary/runs", json={"input": {}}, headers=viewer)
    assert (denied.status_code, denied.json()["code"]) == (403, "forbidden")
    assert client.post("/v1/workflows", json=SUMMARY, headers=viewer).status_code == 403
    anonymous = client.get("/v1/workflows", headers={"Authorization": ""})
    assert anonymous.status_code == 401
