"""The workflow → Amazon States Language compiler: the states of every node type, retries and
their error names, the compensation chain, approvals with task tokens, and determinism.
(Executions on moto's interpreter: tests/integration/workflows/test_stepfunctions_moto.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidInput
from shared.sagas.asl import LAMBDA_INVOKE, LAMBDA_INVOKE_CALLBACK, LAMBDA_TRANSIENT_ERRORS
from shared.workflows.asl import (
    CALLER_ERROR,
    COMPENSATED_ERROR,
    FAILED_ERROR,
    MAX_TIMEOUT_S,
    TASK_OVERHEAD_S,
    compile_workflow,
    error_name,
    node_retriers,
)
from shared.workflows.definition import RetryPolicy, ValidationRules, parse_definition
from shared.workflows.task import failure_of, task_error

pytestmark = pytest.mark.unit

FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:quarry-workflows"
EXAMPLES = Path(__file__).resolve().parents[4] / "examples" / "workflows"


def compile_source(source: dict[str, Any]) -> dict[str, Any]:
    definition = parse_definition(source, ValidationRules())
    return compile_workflow(
        definition,
        step_function_arn=FUNCTION,
        default_timeout_s=60,
        default_approval_timeout_s=7200,
    )


def tool(node_id: str, *, undo: bool = False, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "type": "tool", "tool": "t", **extra}
    if undo:
        node["compensation"] = {"type": "tool", "tool": "undo", "input": {"id": node_id}}
    return node


def workflow(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "flow", "nodes": list(nodes), **extra}


def machines(asl: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The machine and every sub-machine (Parallel branches, Map item processors)."""
    yield asl
    for state in asl["States"].values():
        for branch in state.get("Branches", []):
            yield from machines(branch)
        if "ItemProcessor" in state:
            yield from machines(state["ItemProcessor"])


def assert_well_formed(asl: dict[str, Any]) -> None:
    """Every transition stays inside its (sub-)machine and every state is reachable."""
    names: list[str] = []
    for machine in machines(asl):
        states = machine["States"]
        names.extend(states)
        seen, pending = set(), [machine["StartAt"]]
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            assert name in states, f"{name} is a target but not a state of its machine"
            seen.add(name)
            state = states[name]
            pending.extend([state["Next"]] if "Next" in state else [])
            pending.extend(c["Next"] for c in state.get("Catch", []))
            pending.extend(c["Next"] for c in state.get("Choices", []))
            pending.extend([state["Default"]] if "Default" in state else [])
            terminal = state["Type"] in ("Succeed", "Fail", "Choice") or state.get("End")
            assert terminal or "Next" in state, name
        assert seen == set(states), f"unreachable: {set(states) - seen}"
    assert len(names) == len(set(names)), "state names are unique in the whole machine"
    assert all(0 < len(name) <= 80 for name in names)
    json.dumps(asl)


EVERYTHING = workflow(
    tool("first", undo=True, retry={"attempts": 3, "backoff_s": 0.5}, timeout_s=12.5),
    {
        "id": "pick",
        "type": "branch",
        "condition": "nodes.first.output.ok",
        "depends_on": ["first"],
        "then": [{"id": "ask", "type": "approval", "message": "ok?", "timeout_s": 600}],
        "else": [],
    },
    {
        "id": "fan",
        "type": "parallel",
        "depends_on": ["pick"],
        "branches": [
            [tool("left", undo=True)],
            [tool("right"), tool("right2", depends_on=["right"])],
        ],
    },
    {
        "id": "each",
        "type": "map",
        "items": "$.input.items",
        "max_concurrency": 3,
        "depends_on": ["fan"],
        "nodes": [
            tool("one", undo=True),
            {"id": "inner", "type": "branch", "condition": "item", "then": [tool("two")]},
        ],
    },
    tool("last", depends_on=["each"]),
)


def test_every_node_type_compiles_to_a_well_formed_machine() -> None:
    asl = compile_source(EVERYTHING)
    assert_well_formed(asl)
    states = asl["States"]
    assert asl["StartAt"] == "Start"
    assert list(states) == [
        "Start",
        "first",
        "pick",
        "pick.choice",
        "ask",
        "pick.join",
        "fan",
        "fan.merge",
        "each",
        "each.each",
        "last",
        "RecordSuccess",
        "Succeeded",
        "one.compensate",
        "left.compensate",
        "first.compensate",
        "RecordFailure",
        "Outcome",
        "Compensated",
        "Failed",
    ]
    assert {name: state["Type"] for name, state in states.items()} == {
        **dict.fromkeys(["first", "pick", "ask", "each", "last"], "Task"),
        **dict.fromkeys(["RecordSuccess", "RecordFailure"], "Task"),
        **dict.fromkeys(["one.compensate", "left.compensate", "first.compensate"], "Task"),
        "Start": "Pass",
        "pick.choice": "Choice",
        "pick.join": "Pass",
        "fan": "Parallel",
        "fan.merge": "Pass",
        "each.each": "Map",
        "Succeeded": "Succeed",
        "Outcome": "Choice",
        "Compensated": "Fail",
        "Failed": "Fail",
    }


def test_compiling_is_deterministic() -> None:
    first = json.dumps(compile_source(EVERYTHING))
    assert json.dumps(compile_source(EVERYTHING)) == first


def test_the_start_state_builds_the_state_from_the_execution_input() -> None:
    start = compile_source(EVERYTHING)["States"]["Start"]
    assert start["Parameters"] == {
        "run_id.$": "$.run_id",
        "tenant_id.$": "$.tenant_id",
        "key_prefix": "",
        "context": {"input.$": "$.input", "nodes": {}},
    }


def test_a_leaf_is_a_task_merging_its_output_into_the_context() -> None:
    first = compile_source(EVERYTHING)["States"]["first"]
    assert first["Resource"] == LAMBDA_INVOKE
    assert first["Parameters"] == {
        "FunctionName": FUNCTION,
        "Payload": {
            "kind": "workflow_node",
            "run_id.$": "$.run_id",
            "tenant_id.$": "$.tenant_id",
            "node": "first",
            "key_prefix.$": "$.key_prefix",
            "attempt.$": "$$.State.RetryCount",
            "context.$": "$.context",
        },
    }
    assert first["ResultSelector"] == {
        "status.$": "$.Payload.status",
        "output.$": "$.Payload.output",
    }
    assert first["ResultPath"] == "$.context.nodes.first"
    assert first["TimeoutSeconds"] == 13 + TASK_OVERHEAD_S  # 12.5 s rounded up
    last = compile_source(EVERYTHING)["States"]["last"]
    assert last["TimeoutSeconds"] == 60 + TASK_OVERHEAD_S  # the default


def test_retry_policy_becomes_retriers() -> None:
    lambda_errors, no_retry, retry = compile_source(EVERYTHING)["States"]["first"]["Retry"]
    assert lambda_errors["ErrorEquals"] == list(LAMBDA_TRANSIENT_ERRORS)
    assert no_retry == {"ErrorEquals": [CALLER_ERROR], "MaxAttempts": 0}
    assert retry == {
        "ErrorEquals": ["States.ALL"],
        "IntervalSeconds": 1,
        "MaxAttempts": 2,
        "BackoffRate": 2.0,
        "MaxDelaySeconds": 60,
    }


def test_retry_on_lists_exactly_those_codes() -> None:
    policy = RetryPolicy(
        attempts=4, backoff_s=2, max_backoff_s=5, retry_on=["node_timeout", "http_unavailable"]
    )
    _, retry = node_retriers(policy)
    assert retry == {
        "ErrorEquals": ["States.Timeout", "http_unavailable", "node_timeout"],
        "IntervalSeconds": 2,
        "MaxAttempts": 3,
        "BackoffRate": 2.0,
        "MaxDelaySeconds": 5,
    }
    assert node_retriers(RetryPolicy(attempts=1)) == node_retriers(RetryPolicy())
    assert len(node_retriers(RetryPolicy())) == 1  # Lambda's transient errors only


def test_retry_on_takes_no_step_functions_names() -> None:
    with pytest.raises(InvalidInput, match=r"States\.ALL"):
        node_retriers(RetryPolicy(attempts=2, retry_on=["States.ALL"]))


@pytest.mark.parametrize(
    ("code", "callers_fault", "retry_on", "name"),
    [
        ("dependency_unavailable", False, [], "dependency_unavailable"),
        ("node_timeout", False, [], "node_timeout"),
        ("http_error", True, [], CALLER_ERROR),
        ("http_error", True, ["http_error"], "http_error"),  # retry_on wins, as in the engine
        ("expression_error", True, ["http_error"], CALLER_ERROR),
    ],
)
def test_error_names(code: str, callers_fault: bool, retry_on: list[str], name: str) -> None:
    policy = RetryPolicy(attempts=2, retry_on=retry_on)
    assert error_name(code, callers_fault=callers_fault, policy=policy) == name
    assert type(task_error(name, "n", code, "m")).__name__ == name


def test_failures_compensate_in_reverse_from_the_last_compensable_node() -> None:
    states = compile_source(EVERYTHING)["States"]
    entries = {name: states[name]["Catch"][0]["Next"] for name in states if "Catch" in states[name]}
    entries = {k: v for k, v in entries.items() if not k.endswith(".compensate")}
    assert entries == {
        "first": "first.compensate",  # itself: it may have left part of its work behind
        "pick": "first.compensate",
        "ask": "first.compensate",
        "fan": "left.compensate",  # a failed branch: left may have completed
        "each": "left.compensate",  # resolving the items: nothing of the body ran
        "each.each": "one.compensate",
        "last": "one.compensate",
        "RecordSuccess": "one.compensate",  # the run's output could not be resolved
        "RecordFailure": "Failed",
    }
    assert all(
        states[name]["Catch"][0]["ResultPath"] == "$.error"
        for name in entries
        if name != "RecordFailure"
    )
    chain = [
        ("one.compensate", "left.compensate"),
        ("left.compensate", "first.compensate"),
        ("first.compensate", "RecordFailure"),
    ]
    for name, after in chain:
        compensation = states[name]
        assert compensation["Next"] == after
        assert compensation["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.compensation_error", "Next": after}
        ]
        assert compensation["ResultPath"] is None
        assert compensation["Parameters"]["Payload"] == {
            "kind": "workflow_node",
            "run_id.$": "$.run_id",
            "tenant_id.$": "$.tenant_id",
            "node": name.removesuffix(".compensate"),
            "compensate": True,
            "attempt.$": "$$.State.RetryCount",
        }
    assert states["RecordFailure"]["Parameters"]["Payload"]["error.$"] == "$.error"
    assert states["Outcome"]["Choices"] == [
        {"Variable": "$.outcome.status", "StringEquals": "compensated", "Next": "Compensated"}
    ]
    assert states["Compensated"]["Error"] == COMPENSATED_ERROR
    assert states["Failed"]["Error"] == FAILED_ERROR


def test_without_compensations_a_failure_ends_failed() -> None:
    states = compile_source(workflow(tool("a"), tool("b", depends_on=["a"])))["States"]
    assert states["a"]["Catch"][0]["Next"] == "RecordFailure"
    assert states["RecordFailure"]["Next"] == "Failed"
    assert "Outcome" not in states
    assert "Compensated" not in states


def test_only_top_level_states_catch() -> None:
    states = compile_source(EVERYTHING)["States"]
    for branch in states["fan"]["Branches"]:
        assert all("Catch" not in s for s in branch["States"].values())
    body = states["each.each"]["ItemProcessor"]["States"]
    assert all("Catch" not in s for s in body.values())


def test_approval_waits_for_its_task_token() -> None:
    ask = compile_source(EVERYTHING)["States"]["ask"]
    assert ask["Resource"] == LAMBDA_INVOKE_CALLBACK
    payload = ask["Parameters"]["Payload"]
    assert payload["task_token.$"] == "$$.Task.Token"
    assert payload["node"] == "ask"
    assert ask["ResultSelector"] == {"status": "succeeded", "output.$": "$"}
    assert ask["ResultPath"] == "$.context.nodes.ask"
    assert ask["TimeoutSeconds"] == 600
    assert "HeartbeatSeconds" not in ask
    assert [r["ErrorEquals"] for r in ask["Retry"]] == [list(LAMBDA_TRANSIENT_ERRORS)]
    default = compile_source(workflow({"id": "ok", "type": "approval"}))["States"]["ok"]
    assert default["TimeoutSeconds"] == 7200
    forever = workflow({"id": "ok", "type": "approval", "timeout_s": 1e12})
    assert compile_source(forever)["States"]["ok"]["TimeoutSeconds"] == MAX_TIMEOUT_S


def test_branch_is_a_condition_task_a_choice_and_a_join() -> None:
    states = compile_source(EVERYTHING)["States"]
    condition = states["pick"]
    assert condition["Parameters"]["Payload"]["node"] == "pick"
    assert condition["ResultSelector"] == {
        "input.$": "$.Payload.input",
        "nodes.$": "$.Payload.nodes",
    }
    assert condition["ResultPath"] == "$.context"
    assert condition["Next"] == "pick.choice"
    assert states["pick.choice"] == {
        "Type": "Choice",
        "Choices": [
            {
                "Variable": "$.context.nodes.pick.output.taken",
                "StringEquals": "then",
                "Next": "ask",
            }
        ],
        "Default": "pick.join",  # an empty else goes straight to the join
    }
    assert states["ask"]["Next"] == "pick.join"
    assert states["pick.join"] == {"Type": "Pass", "Next": "fan"}


def test_parallel_merges_what_its_branches_recorded() -> None:
    states = compile_source(EVERYTHING)["States"]
    fan = states["fan"]
    assert [b["StartAt"] for b in fan["Branches"]] == ["left", "right"]
    assert fan["Branches"][1]["States"]["right2"]["End"] is True
    assert fan["ResultSelector"] == {
        "left.$": "$[0].context.nodes.left",
        "right.$": "$[1].context.nodes.right",
        "right2.$": "$[1].context.nodes.right2",
        "fan": {
            "status": "succeeded",
            "output.$": "States.Array($[0].context.nodes.left.output, "
            "$[1].context.nodes.right2.output)",
        },
    }
    assert fan["ResultPath"] == "$.parallel"
    merge = states["fan.merge"]["Parameters"]
    assert merge["context"]["nodes.$"] == "States.JsonMerge($.context.nodes, $.parallel, false)"
    assert "parallel" not in merge  # the scratch is dropped


def test_map_resolves_its_items_then_runs_its_body_per_item() -> None:
    states = compile_source(EVERYTHING)["States"]
    items = states["each"]
    assert items["Parameters"]["Payload"]["node"] == "each"
    assert items["ResultSelector"] == {"items.$": "$.Payload.items"}
    assert items["ResultPath"] == "$.map_items"
    each = states["each.each"]
    assert each["ItemsPath"] == "$.map_items.items"
    assert each["MaxConcurrency"] == 3
    assert each["ItemSelector"] == {
        "run_id.$": "$.run_id",
        "tenant_id.$": "$.tenant_id",
        "key_prefix.$": "States.Format('{}each[{}].', $.key_prefix, $$.Map.Item.Index)",
        "context": {
            "input.$": "$.context.input",
            "nodes.$": "$.context.nodes",
            "item.$": "$$.Map.Item.Value",
            "index.$": "$$.Map.Item.Index",
        },
    }
    body = each["ItemProcessor"]["States"]
    assert list(body) == ["one", "inner", "inner.choice", "two", "inner.join", "each.output"]
    assert body["each.output"] == {
        "Type": "Pass",
        "OutputPath": "$.context.nodes.inner.output",
        "End": True,
    }
    # Inside a map body the context also carries the item and its index.
    assert body["inner"]["ResultSelector"] == {
        "input.$": "$.Payload.input",
        "nodes.$": "$.Payload.nodes",
        "item.$": "$.Payload.item",
        "index.$": "$.Payload.index",
    }
    assert each["ResultSelector"] == {"status": "succeeded", "output.$": "$"}
    assert each["ResultPath"] == "$.context.nodes.each"


def test_success_records_the_run_and_answers_its_output() -> None:
    states = compile_source(EVERYTHING)["States"]
    record = states["RecordSuccess"]
    assert record["Parameters"]["Payload"] == {
        "kind": "workflow_end",
        "run_id.$": "$.run_id",
        "tenant_id.$": "$.tenant_id",
        "outcome": "succeeded",
        "context.$": "$.context",
    }
    assert record["ResultSelector"] == {"output.$": "$.Payload.output"}
    assert record["Next"] == "Succeeded"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_compiles(path: Path) -> None:
    definition = parse_definition(path.read_text(), ValidationRules(llm_configured=True))
    asl = compile_workflow(
        definition, step_function_arn=FUNCTION, default_timeout_s=60, default_approval_timeout_s=60
    )
    assert_well_formed(asl)
    assert set(definition.graph.node_ids()) <= {
        name for machine in machines(asl) for name in machine["States"]
    }


@pytest.mark.parametrize(
    ("error", "node", "code", "message"),
    [
        (  # a WorkflowTaskError, as Lambda reports it
            {
                "Error": "caller_error",
                "Cause": json.dumps(
                    {
                        "errorType": "caller_error",
                        "errorMessage": json.dumps(
                            {"node": "m[1].x", "code": "http_error", "message": "404"}
                        ),
                    }
                ),
            },
            "m[1].x",
            "http_error",
            "404",
        ),
        (  # a rejection sent with the task token
            {
                "Error": "approval_rejected",
                "Cause": json.dumps({"node": "ok", "code": "approval_rejected", "message": "no"}),
            },
            "ok",
            "approval_rejected",
            "no",
        ),
        (  # another function error
            {
                "Error": "Runtime.ImportModuleError",
                "Cause": json.dumps({"errorMessage": "no module", "errorType": "X"}),
            },
            None,
            "Runtime.ImportModuleError",
            "no module",
        ),
        ({"Error": "States.Timeout", "Cause": None}, None, "States.Timeout", "States.Timeout"),
    ],
)
def test_failure_of_reads_what_the_machine_caught(
    error: dict[str, Any], node: str | None, code: str, message: str
) -> None:
    failure = failure_of(error)
    assert (failure.node_key, failure.code, failure.message) == (node, code, message)
