"""``quarry workflow compile``: a definition file printed as Amazon States Language."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from functions.cli import app
from shared.settings import WorkflowSettings
from shared.workflows.asl import compile_workflow
from shared.workflows.definition import ValidationRules, parse_definition

pytestmark = pytest.mark.integration

COUNT = {
    "name": "count",
    "nodes": [{"id": "c", "type": "tool", "tool": "text_word_count", "input": {"text": "x"}}],
}


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QUARRY_WORKFLOWS__DEFAULT_NODE_TIMEOUT_S", "15")
    return CliRunner()


def test_compile_prints_the_state_machine(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "count.yaml"
    path.write_text(yaml.safe_dump(COUNT))
    result = runner.invoke(app, ["workflow", "compile", str(path), "--function", "wf-fn"])
    assert result.exit_code == 0, result.output
    expected = compile_workflow(
        parse_definition(COUNT, ValidationRules()),
        step_function_arn="wf-fn",
        default_timeout_s=15,
        default_approval_timeout_s=WorkflowSettings().default_approval_timeout_s,
    )
    assert json.loads(result.output) == expected
    placeholder = runner.invoke(app, ["workflow", "compile", str(path)])
    state = json.loads(placeholder.output)["States"]["c"]
    assert state["Parameters"]["FunctionName"] == "${WorkflowFunction}"


def test_compile_refuses_an_invalid_definition(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**COUNT, "nodes": [{"id": "x", "type": "tool", "tool": "nope"}]}))
    result = runner.invoke(app, ["workflow", "compile", str(path)])
    assert result.exit_code == 2
    assert "unknown_tool" in result.output
