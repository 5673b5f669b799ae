"""The KB admin HTTP API on the local app (embedded defaults)."""

from __future__ import annotations

import copy
import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from functions.local_app import create_local_app
from shared.settings import Settings
from tests.events import FakeLambdaContext, load_event
from tests.fixtures.auth import sign_up

pytestmark = pytest.mark.integration

NOTE = ("notes.txt", b"Glaciers in the Alps lost a tenth of their volume.", "text/plain")


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = make_settings(ingestion={"max_file_bytes": 10_000})
    with TestClient(create_local_app(settings)) as test_client:
        test_client.headers.update(sign_up(test_client))
        yield test_client


def create_kb(client: TestClient, name: str = "alps") -> dict[str, object]:
    response = client.post("/v1/kbs", json={"name": name, "description": "mountains"})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_kb_lifecycle(client: TestClient) -> None:
    kb = create_kb(client)
    assert kb["embedding_model"] == "all-MiniLM-L6-v2"
    assert kb["version"] == 1
    assert client.post("/v1/kbs", json={"name": "alps"}).json()["code"] == "kb_exists"
    bad = client.post("/v1/kbs", json={"name": "no spaces allowed"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_kb_name")
    unknown = client.post("/v1/kbs", json={"name": "x", "embedding_model": "gpt-embed"})
    assert unknown.json()["code"] == "unknown_embedding_model"
    assert [k["name"] for k in client.get("/v1/kbs").json()["items"]] == ["alps"]
    assert client.get(f"/v1/kbs/{kb['id']}").json()["name"] == "alps"
    patched = client.patch("/v1/kbs/alps", json={"description": "peaks"}).json()
    assert patched["description"] == "peaks"
    assert client.delete("/v1/kbs/alps").status_code == 204
    missing = client.get("/v1/kbs/alps")
    assert (missing.status_code, missing.json()["code"]) == (404, "kb_not_found")


def test_upload_wait_then_read_reindex_and_delete(client: TestClient) -> None:
    create_kb(client)
    response = client.post("/v1/kbs/alps/documents?wait=true", files={"files": NOTE})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run"]["status"] == "succeeded"
    assert [d["status"] for d in body["documents"]] == ["ready"]

    doc = client.get("/v1/kbs/alps/documents/notes.txt").json()
    assert doc["chunks"][0]["text"].startswith("Glaciers")
    assert doc["generation"] == 1
    stats = client.get("/v1/kbs/alps/stats").json()
    assert (stats["documents"], stats["chunks"]) == (1, 1)
    assert stats["kb"]["version"] == 2

    again = client.post("/v1/kbs/alps/documents?wait=true", files={"files": NOTE}).json()
    assert again["unchanged"] == ["notes.txt"]

    reindexed = client.post(f"/v1/kbs/alps/documents/{doc['id']}/reindex").json()
    assert reindexed["documents"][0]["generation"] == 2
    assert reindexed["documents"][0]["status"] == "ready"
    run = client.get(f"/v1/kbs/alps/runs/{reindexed['run']['id']}").json()
    assert run["steps"]["publish"] == "succeeded"

    assert client.delete("/v1/kbs/alps/documents/notes.txt").status_code == 204
    assert client.get("/v1/kbs/alps/documents/notes.txt").json()["code"] == "document_not_found"


def test_background_upload_answers_202_pending_then_becomes_ready(client: TestClient) -> None:
    create_kb(client)
    response = client.post("/v1/kbs/alps/documents", files={"files": NOTE})
    assert response.status_code == 202
    assert response.json()["documents"][0]["status"] == "pending"
    deadline = time.monotonic() + 60
    status = "pending"
    while status != "ready" and time.monotonic() < deadline:
        status = client.get("/v1/kbs/alps/documents/notes.txt").json()["status"]
        time.sleep(0.2)
    assert status == "ready"
    listed = client.get("/v1/kbs/alps/documents?status=ready").json()["items"]
    assert [d["name"] for d in listed] == ["notes.txt"]


@pytest.mark.parametrize(
    ("upload", "status", "code"),
    [
        (("movie.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4"), 415, "unsupported_type"),
        (("empty.txt", b"", "text/plain"), 422, "empty_document"),
        (("big.txt", b"x" * 20_000, "text/plain"), 413, "file_too_large"),
        (("fake.pdf", b"PK\x03\x04zip", "application/pdf"), 415, "type_mismatch"),
        (("../escape.txt", b"hello", "text/plain"), 422, "invalid_key"),
    ],
)
def test_bad_uploads_are_clear_4xx(
    client: TestClient, upload: tuple[str, bytes, str], status: int, code: str
) -> None:
    create_kb(client)
    response = client.post("/v1/kbs/alps/documents?wait=true", files={"files": upload})
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert client.get("/v1/kbs/alps/documents").json()["items"] == []


def test_presigned_upload_needs_s3_and_unknown_runs_are_404(client: TestClient) -> None:
    create_kb(client)
    response = client.post("/v1/kbs/alps/documents/upload-url", json={"name": "a.pdf"})
    assert response.json()["code"] == "presigned_upload_unavailable"
    assert client.get(f"/v1/kbs/alps/runs/{uuid.uuid4()}").json()["code"] == "run_not_found"
    resume = client.post(f"/v1/kbs/alps/runs/{uuid.uuid4()}/resume")
    assert resume.status_code == 404


def test_lambda_routes_need_an_authorized_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path))
    handler = importlib.import_module("functions.kb_admin.handler")
    event = copy.deepcopy(load_event("apigw_http_v2_get_health"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/kbs"
    event["routeKey"] = event["requestContext"]["routeKey"] = "GET /v1/kbs"
    response = handler.lambda_handler(event, FakeLambdaContext())
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["code"] == "unauthenticated"
