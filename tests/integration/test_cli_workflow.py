"""``quarry workflow validate`` and ``quarry workflow run`` on the local defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from functions.cli import app

pytestmark = pytest.mark.integration

COUNT = {
    "name": "count",
    "input": {"text": {"type": "string"}},
    "nodes": [
        {"id": "c", "type": "tool", "tool": "text_word_count", "input": {"text": "$.input.text"}},
        {"id": "words", "type": "transform", "template": "{{ nodes.c.output.words }}"},
    ],
}


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_validate_lists_every_problem(runner: CliRunner, tmp_path: Path) -> None:
    good = tmp_path / "count.yaml"
    good.write_text(yaml.safe_dump(COUNT))
    result = runner.invoke(app, ["workflow", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**COUNT, "nodes": [{"id": "x", "type": "tool", "tool": "nope"}]}))
    result = runner.invoke(app, ["workflow", "validate", str(bad)])
    assert result.exit_code == 2
    assert "invalid_workflow" in result.output
    assert "unknown_tool" in result.output


def test_run_prints_the_run_and_stores_one_version(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "count.yaml"
    path.write_text(yaml.safe_dump(COUNT))
    args = ["workflow", "run", str(path), "--input", '{"text": "one two"}', "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    run = json.loads(first.output)
    assert (run["status"], run["output"], run["workflow_version"]) == ("succeeded", 2, 1)
    assert [n["node_key"] for n in run["nodes"]] == ["c", "words"]
    again = json.loads(runner.invoke(app, args).output)
    assert again["workflow_version"] == 1  # unchanged definition: same version
    human = runner.invoke(app, ["workflow", "run", str(path), "--input", '{"text": "x"}'])
    assert "succeeded" in human.output
    wrong = runner.invoke(app, ["workflow", "run", str(path), "--input", '{"text": 1}'])
    assert wrong.exit_code == 2
    assert "invalid_workflow_input" in wrong.output
    assert runner.invoke(app, ["workflow", "run", str(path), "--input", "{no"]).exit_code == 2


def test_a_failed_run_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    failing = {**COUNT, "nodes": [{"id": "t", "type": "transform", "template": "{{ input.x.y }}"}]}
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(failing))
    result = runner.invoke(app, ["workflow", "run", str(path), "--input", '{"text": "a"}'])
    assert result.exit_code == 1
    assert "expression_error" in result.output
