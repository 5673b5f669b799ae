"""``quarry user create`` / ``quarry api-key create``: credentials for the CLI's tenant work on
the HTTP API, which then sees the knowledge bases the CLI made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from functions.cli import app
from functions.local_app import create_local_app
from shared.settings import Settings
from tests.conftest import FAST_PASSWORD_HASHING
from tests.fixtures.auth import PASSWORD, bearer, sign_in

pytestmark = pytest.mark.integration


def test_cli_credentials_reach_the_cli_tenant_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path))
    for name, value in FAST_PASSWORD_HASHING.items():
        monkeypatch.setenv(f"QUARRY_AUTH__{name.upper()}", str(value))
    runner = CliRunner()
    assert runner.invoke(app, ["kb", "create", "alps"]).exit_code == 0
    monkeypatch.setenv("QUARRY_NEW_USER_PASSWORD", PASSWORD)
    made = runner.invoke(app, ["user", "create", "--email", "ops@example.com", "--role", "viewer"])
    assert made.exit_code == 0, made.output
    weak = runner.invoke(app, ["user", "create", "--email", "x@example.com", "--password", "short"])
    assert weak.exit_code == 2
    assert "weak_password" in weak.output
    key = runner.invoke(app, ["api-key", "create", "--name", "ci", "--scope", "kb:read", "--json"])
    assert key.exit_code == 0, key.output
    created = json.loads(key.output)

    with TestClient(create_local_app(Settings())) as client:
        viewer = bearer(sign_in(client, "ops@example.com")["access_token"])
        assert [kb["name"] for kb in client.get("/v1/kbs", headers=viewer).json()["items"]] == [
            "alps"
        ]
        assert client.post("/v1/kbs", json={"name": "x"}, headers=viewer).status_code == 403
        by_key = client.get("/v1/kbs", headers={"X-API-Key": created["key"]})
        assert [kb["name"] for kb in by_key.json()["items"]] == ["alps"]
