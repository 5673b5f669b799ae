"""Workflow definitions: parsing JSON and YAML, the DAG, scopes, references and limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidInput, PayloadTooLarge
from shared.workflows.definition import (
    BranchNode,
    HttpNode,
    MapNode,
    ValidationRules,
    WorkflowDefinition,
    load_definition,
    parse_definition,
)

pytestmark = pytest.mark.unit

RULES = ValidationRules()


def workflow(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "demo", "nodes": list(nodes), **extra}


def transform(node_id: str, expression: str = "input", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "jmespath": expression, **extra}


def errors_of(source: Any, rules: ValidationRules = RULES) -> list[dict[str, Any]]:
    with pytest.raises(InvalidInput) as caught:
        parse_definition(source, rules)
    assert caught.value.code == "invalid_workflow"
    errors: list[dict[str, Any]] = caught.value.details["errors"]
    return errors


def codes(source: Any, rules: ValidationRules = RULES) -> list[str]:
    return [e["code"] for e in errors_of(source, rules)]


YAML = """
name: support-answer
description: Answer from the handbook
input:
  question: {type: string}
  top_k: {type: integer, required: false, default: 5}
nodes:
  - id: search
    type: retrieve
    kb: handbook
    query: "{{ input.question }}"
    top_k: $.input.top_k
  - id: answer
    type: generate
    question: "{{ input.question }}"
    passages: $.nodes.search.output.hits
    retry: {attempts: 3, backoff_s: 1, retry_on: [dependency_unavailable]}
    timeout_s: 20
output:
  answer: $.nodes.answer.output.text
"""


def test_yaml_and_json_give_the_same_definition(tmp_path: Path) -> None:
    from_yaml = parse_definition(YAML, RULES)
    as_json = json.dumps(from_yaml.to_document())
    from_json = parse_definition(as_json, RULES)
    assert from_json == from_yaml
    path = tmp_path / "wf.yaml"
    path.write_text(YAML)
    assert load_definition(path, RULES) == from_yaml
    answer = from_yaml.nodes[1]
    assert answer.type == "generate"
    assert answer.retry.attempts == 3
    assert [answer.retry.delay_s(n) for n in (1, 2, 3)] == [1, 2, 4]
    assert from_yaml.graph.dependencies("answer") == {"search"}


def test_stored_document_round_trips_aliases() -> None:
    source = workflow(
        {"id": "call", "type": "http", "method": "POST", "url": "https://x.test", "json": {"a": 1}},
        {
            "id": "pick",
            "type": "branch",
            "condition": "nodes.call.output.status",
            "else": [transform("other")],
        },
    )
    document = parse_definition(source, RULES).to_document()
    assert document["nodes"][0]["json"] == {"a": 1}
    assert document["nodes"][1]["else"][0]["id"] == "other"
    again = parse_definition(document, RULES)
    call, pick = again.nodes
    assert isinstance(call, HttpNode)
    assert call.json_body == {"a": 1}
    assert isinstance(pick, BranchNode)
    assert pick.else_[0].id == "other"


def test_syntax_and_schema_errors_are_clear() -> None:
    assert codes("name: [unclosed") == ["invalid_syntax"]
    assert codes("- a list") == ["invalid_syntax"]
    errors = errors_of(workflow({"id": "x", "type": "teleport"}))
    assert errors[0]["code"] == "invalid_field"
    assert errors[0]["loc"].startswith("nodes[0]")
    bad_name = errors_of({"name": "no spaces", "nodes": [transform("a")]})
    assert "workflow name" in bad_name[0]["message"]
    assert codes(workflow(transform("a", unknown=1)))[0] == "invalid_field"
    both = {"id": "t", "type": "transform", "jmespath": "input", "template": "x"}
    assert "exactly one" in errors_of(workflow(both))[0]["message"]
    retry_on_branch = {"id": "b", "type": "branch", "condition": "input", "retry": {}}
    assert codes(workflow(retry_on_branch)) == ["invalid_field"]


def test_node_ids_unique_and_well_formed_across_nesting() -> None:
    nested = {"id": "b", "type": "branch", "condition": "input", "then": [transform("a")]}
    assert codes(workflow(transform("a"), nested)) == ["duplicate_node_id"]
    assert codes(workflow(transform("Bad-Id"))) == ["invalid_node_id"]


def test_references_must_exist_and_be_static() -> None:
    assert codes(workflow(transform("a", "nodes.missing.output"))) == ["unknown_reference"]
    assert codes(workflow(transform("a", depends_on=["ghost"]))) == ["unknown_reference"]
    assert codes(workflow(transform("a", "nodes.a.output"))) == ["self_reference"]
    assert codes(workflow(transform("a", "nodes.*"))) == ["dynamic_reference"]
    assert codes(workflow(transform("a", "@"))) == ["dynamic_reference"]
    dynamic = {"id": "t", "type": "transform", "template": "{{ nodes[input.which] }}"}
    assert codes(workflow(dynamic)) == ["dynamic_reference"]
    assert codes(workflow(transform("a", "foo.bar"))) == ["unknown_variable"]
    assert codes(workflow(transform("a", "length(")))[0] == "expression_error"
    assert codes(workflow({"id": "t", "type": "transform", "template": "{{ oops"})) == [
        "expression_error"
    ]


def test_references_inside_filters_are_not_roots() -> None:
    source = workflow(
        transform("a", "input.items"),
        transform("b", "nodes.a.output[?score > `1`].text | [0]"),
    )
    graph = parse_definition(source, RULES).graph
    assert graph.dependencies("b") == {"a"}


def test_cycles_are_refused_and_order_follows_dependencies() -> None:
    cyclic = workflow(
        transform("a", "nodes.c.output"),
        transform("b", "nodes.a.output"),
        transform("c", "nodes.b.output"),
    )
    errors = errors_of(cyclic)
    assert [e["code"] for e in errors] == ["cycle"]
    assert "a, b, c" in errors[0]["message"]
    backwards = parse_definition(
        workflow(transform("last", "nodes.first.output"), transform("first")), RULES
    )
    order = backwards.graph.order(backwards.nodes)
    assert [n.id for n in order] == ["first", "last"]


def test_nested_references_are_lifted_to_their_containers() -> None:
    source = workflow(
        transform("search"),
        {
            "id": "check",
            "type": "branch",
            "condition": "input.go",
            "then": [
                transform("inner", "nodes.search.output"),
                transform("inner2", "nodes.inner.output"),
            ],
        },
        transform("after", "nodes.inner2.output"),
        {
            "id": "each",
            "type": "map",
            "items": "$.input.list",
            "nodes": [transform("per_item", "item")],
        },
    )
    definition = parse_definition(source, RULES)
    graph = definition.graph
    assert graph.dependencies("check") == {"search"}  # an inner node reads search
    assert graph.dependencies("inner") == set()
    assert graph.dependencies("inner2") == {"inner"}
    assert graph.dependencies("after") == {"check"}  # waits for the container
    assert graph.scope_of("per_item") == (("each", "nodes"),)
    assert isinstance(definition.nodes[3], MapNode)


def test_invalid_scope_references() -> None:
    into_map = workflow(
        {"id": "m", "type": "map", "items": "$.input.l", "nodes": [transform("x", "item")]},
        transform("after", "nodes.x.output"),
    )
    assert codes(into_map) == ["invalid_reference"]
    own_container = workflow(
        {"id": "b", "type": "branch", "condition": "input", "then": [transform("x", "nodes.b")]}
    )
    assert codes(own_container) == ["invalid_reference"]
    sibling = workflow(
        {
            "id": "p",
            "type": "parallel",
            "branches": [[transform("x")], [transform("y", "nodes.x.output")]],
        }
    )
    assert codes(sibling) == ["invalid_reference"]
    assert codes(workflow(transform("a", "item"))) == ["unknown_variable"]
    output_into_map = workflow(
        {"id": "m", "type": "map", "items": "$.input.l", "nodes": [transform("x", "item")]},
        output={"x": "$.nodes.x.output"},
    )
    assert codes(output_into_map) == ["invalid_reference"]
    assert codes(workflow(transform("a"), output={"x": "$.nodes.nope.output"})) == [
        "unknown_reference"
    ]


def test_secrets_only_in_http_headers() -> None:
    header = {
        "id": "call",
        "type": "http",
        "url": "https://crm.test",
        "headers": {"authorization": "Bearer {{ secrets.crm_token }}"},
        "compensation": {
            "type": "http",
            "method": "DELETE",
            "url": "https://crm.test/{{ nodes.call.output.body.id }}",
            "headers": {"authorization": "Bearer {{ secrets['crm_token'] }}"},
        },
    }
    parse_definition(workflow(header), RULES)
    in_url = {**header, "url": "https://crm.test/?t={{ secrets.crm_token }}"}
    assert codes(workflow(in_url)) == ["secrets_not_allowed"]
    in_transform = {"id": "t", "type": "transform", "template": "{{ secrets.crm_token }}"}
    assert codes(workflow(in_transform)) == ["secrets_not_allowed"]


def test_limits_llm_and_tools_come_from_the_rules() -> None:
    many = workflow(*(transform(f"n{i}") for i in range(5)))
    assert codes(many, ValidationRules(max_nodes=4)) == ["too_many_nodes"]
    wide = workflow(
        {
            "id": "m",
            "type": "map",
            "items": "$.input.l",
            "max_concurrency": 50,
            "nodes": [transform("x", "item")],
        }
    )
    assert codes(wide) == ["map_concurrency_too_high"]
    agent = {"id": "a", "type": "agent", "prompt": "{{ input.q }}", "tools": ["search_web"]}
    errors = errors_of(workflow(agent), ValidationRules(tool_names=frozenset({"clock"})))
    assert [e["code"] for e in errors] == ["llm_not_configured", "unknown_tool"]
    assert "QUARRY_LLM__PROVIDER" in errors[0]["message"]
    with_llm = ValidationRules(llm_configured=True, tool_names=frozenset({"search_web"}))
    parse_definition(workflow(agent), with_llm)
    greedy = {**agent, "max_steps": 100}
    assert codes(workflow(greedy), with_llm) == ["agent_budget_too_high"]
    generate = {"id": "g", "type": "generate", "question": "why?"}
    parse_definition(workflow(generate), RULES)  # extractive fallback: no LLM needed
    assert codes(workflow({**generate, "require_llm": True})) == ["llm_not_configured"]


def test_all_problems_are_reported_at_once() -> None:
    source = workflow(transform("a", "nodes.ghost.output"), transform("a"))
    errors = errors_of(source)
    assert {e["code"] for e in errors} == {"duplicate_node_id", "unknown_reference"}
    with pytest.raises(InvalidInput, match=r"and 1 more"):
        parse_definition(source, RULES)


def test_definition_size_is_capped() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        parse_definition(YAML, ValidationRules(max_definition_bytes=100))
    assert caught.value.code == "definition_too_large"


def test_run_input_is_checked_against_the_schema() -> None:
    definition = parse_definition(YAML, RULES)
    assert definition.validate_input({"question": "why?"}) == {"question": "why?", "top_k": 5}
    with pytest.raises(InvalidInput) as caught:
        definition.validate_input({"top_k": "five", "extra": 1})
    assert caught.value.code == "invalid_workflow_input"
    fields = {e["field"] for e in caught.value.details["errors"]}
    assert fields == {"extra", "question", "top_k"}
    with pytest.raises(InvalidInput):
        definition.validate_input(["not", "an", "object"])
    bad_default = workflow(transform("a"), input={"n": {"type": "integer", "default": "x"}})
    assert codes(bad_default) == ["invalid_default"]


def test_graph_of_an_unparsed_definition_raises() -> None:
    definition = WorkflowDefinition.model_validate(
        workflow(transform("a", "nodes.b.output"), transform("b", "nodes.a.output"))
    )
    with pytest.raises(InvalidInput):
        _ = definition.graph
