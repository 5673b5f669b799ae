from __future__ import annotations

import pytest
from typer.testing import CliRunner

from functions.cli import app

pytestmark = pytest.mark.unit


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "health", "config"):
        assert command in result.output


def test_config_show_masks_secrets() -> None:
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0
    assert '"jwt_secret": "**********"' in result.output


def test_config_docs_check_detects_a_stale_file(tmp_path: pytest.TempPathFactory) -> None:
    target = tmp_path / "configuration.md"  # type: ignore[operator]
    runner = CliRunner()
    assert runner.invoke(app, ["config", "docs", "--output", str(target), "--check"]).exit_code == 1
    assert runner.invoke(app, ["config", "docs", "--output", str(target)]).exit_code == 0
    assert runner.invoke(app, ["config", "docs", "--output", str(target), "--check"]).exit_code == 0


def test_migrate_and_health_on_embedded_defaults(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path))
    # The first check starts Milvus Lite (a second or more on a busy machine).
    monkeypatch.setenv("QUARRY_OBSERVABILITY__HEALTH_TIMEOUT_S", "60")
    runner = CliRunner()
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "upgraded to head" in result.output
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 0, result.output
    assert "database" in result.output
    assert "vector_store" in result.output
    result = runner.invoke(app, ["migrate", "downgrade"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["migrate", "sideways"]).exit_code != 0


def test_health_fails_when_the_database_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARRY_DB__URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(app, ["health"])
    assert result.exit_code == 1
    assert "down" in result.output
