"""The workflow engine on both databases: compensation, retries, approvals, resume, cancel and
the container nodes (branch, parallel, map)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from shared.errors import Conflict
from tests.integration.workflows.conftest import Harness, record, workflow

pytestmark = pytest.mark.integration

CHAIN = ["a", "b", "c", "d"]


def chain(**extra: Any) -> dict[str, Any]:
    """a -> b -> c -> d, each recording its call and compensated by an undo."""
    nodes = [record("a", **extra)]
    for previous, node_id in itertools.pairwise(CHAIN):
        nodes.append(record(node_id, depends_on=[previous], **extra))
    return workflow(*nodes, name="chain")


async def statuses(h: Harness, run_id: Any) -> dict[str, str]:
    details = await h.service.get_run(h.owner, run_id)
    return {n.node_key: n.status for n in details.nodes}


async def run_of(h: Harness, source: dict[str, Any], run_input: Any = None) -> Any:
    await h.service.create(h.owner, source)
    return await h.service.start_run(h.owner, source["name"], run_input or {}, wait_s=None)


@pytest.mark.parametrize("failing", CHAIN)
async def test_failure_at_each_node_compensates_completed_nodes_in_reverse(
    harness: Harness, failing: str
) -> None:
    harness.tools.fail_at = {failing}
    run = await run_of(harness, chain())
    done = CHAIN[: CHAIN.index(failing)]
    assert run.status == "compensated"
    assert run.failed_node == failing
    assert run.error_code == "node_error"
    assert harness.tools.calls == [*done, failing, *(f"undo:{n}" for n in reversed(done))]
    nodes = await statuses(harness, run.id)
    assert nodes == {
        **dict.fromkeys(done, "compensated"),
        failing: "failed",
    }


async def test_without_compensations_a_failure_ends_failed(harness: Harness) -> None:
    harness.tools.fail_at = {"b"}
    source = workflow(record("a", undo=False), record("b", undo=False, depends_on=["a"]))
    run = await run_of(harness, source)
    assert (run.status, run.failed_node) == ("failed", "b")
    assert harness.tools.calls == ["a", "b"]


async def test_a_failed_compensation_ends_failed(harness: Harness) -> None:
    harness.tools.fail_at = {"c"}
    harness.tools.undo_fails_at = {"b"}
    run = await run_of(harness, chain())
    assert run.status == "failed"
    assert harness.tools.calls == ["a", "b", "c", "undo:b", "undo:a"]
    nodes = await statuses(harness, run.id)
    assert (nodes["a"], nodes["b"]) == ("compensated", "compensation_failed")


async def test_success_gives_output_timings_and_metrics(harness: Harness) -> None:
    source = chain()
    source["output"] = {"last": "$.nodes.d.output.name", "first": "{{ nodes.a.output.name }}"}
    run = await run_of(harness, source)
    assert run.status == "succeeded"
    assert run.output == {"last": "d", "first": "a"}
    assert run.duration_ms is not None
    assert run.finished_at is not None
    details = await harness.service.get_run(harness.owner, run.id)
    assert [n.node_key for n in details.nodes] == CHAIN
    assert all(n.duration_ms is not None and n.attempt == 1 for n in details.nodes)
    assert details.nodes[0].input == {"input": {"name": "a"}}
    assert details.nodes[0].tools == ["record"]
    assert harness.metrics.counter_value("workflow_tool_calls", tool="record") == 4
    assert harness.metrics.counter_value("workflow_runs", workflow="chain", status="succeeded") == 1


async def test_retries_follow_the_policy(harness: Harness) -> None:
    harness.tools.flaky = {"a": 2}
    retry = {"attempts": 3, "backoff_s": 0.5, "max_backoff_s": 0.8}
    run = await run_of(harness, workflow(record("a", undo=False, retry=retry)))
    assert run.status == "succeeded"
    assert harness.tools.calls == ["a", "a", "a"]
    assert harness.sleeps == [0.5, 0.8]  # doubling, capped
    details = await harness.service.get_run(harness.owner, run.id)
    assert details.nodes[0].attempt == 3


async def test_retries_stop_when_attempts_run_out(harness: Harness) -> None:
    harness.tools.flaky = {"a": 5}
    source = workflow(record("a", undo=False, retry={"attempts": 2}))
    run = await run_of(harness, source)
    assert (run.status, run.error_code) == ("failed", "backend_down")
    assert harness.tools.calls == ["a", "a"]


async def test_retry_on_lists_the_codes_worth_a_retry(harness: Harness) -> None:
    harness.tools.flaky = {"a": 1}
    source = workflow(record("a", undo=False, retry={"attempts": 3, "retry_on": ["other"]}))
    run = await run_of(harness, source)
    assert run.status == "failed"
    assert harness.tools.calls == ["a"]


async def test_callers_errors_are_not_retried_by_default(harness: Harness) -> None:
    harness.tools.refuse_at = {"a"}
    run = await run_of(harness, workflow(record("a", undo=False, retry={"attempts": 3})))
    assert (run.status, run.error_code) == ("failed", "refused")
    assert harness.tools.calls == ["a"]
    harness.tools.calls.clear()
    source = workflow(
        record("a", undo=False, retry={"attempts": 3, "retry_on": ["refused"]}), name="again"
    )
    await run_of(harness, source)
    assert harness.tools.calls == ["a", "a", "a"]


async def test_a_timed_out_attempt_is_retried(harness: Harness) -> None:
    harness.tools.hang = {"a"}
    source = workflow(record("a", undo=False, timeout_s=0.05, retry={"attempts": 2}))
    run = await run_of(harness, source)
    assert (run.status, run.error_code) == ("failed", "node_timeout")
    assert harness.tools.calls == ["a", "a"]


def approval_flow(**approval: Any) -> dict[str, Any]:
    return workflow(
        record("a"),
        {
            "id": "check",
            "type": "approval",
            "message": "Send {{ nodes.a.output.name }}?",
            "depends_on": ["a"],
            **approval,
        },
        record("b", depends_on=["check"]),
        name="approved",
    )


async def test_approval_pauses_then_approve_resumes(harness: Harness) -> None:
    run = await run_of(harness, approval_flow())
    assert run.status == "waiting_approval"
    assert harness.tools.calls == ["a"]
    details = await harness.service.get_run(harness.owner, run.id)
    waiting = details.nodes[-1]
    assert (waiting.node_key, waiting.status) == ("check", "waiting_approval")
    assert waiting.input == {"message": "Send a?"}
    assert waiting.expires_at is not None

    approved = await harness.service.approve(harness.owner, run.id, comment="ok", wait_s=None)
    assert approved.status == "succeeded"
    assert harness.tools.calls == ["a", "b"]  # a did not run again
    nodes = await statuses(harness, run.id)
    assert nodes == {"a": "succeeded", "check": "succeeded", "b": "succeeded"}
    details = await harness.service.get_run(harness.owner, run.id)
    check = next(n for n in details.nodes if n.node_key == "check")
    assert check.decided_by == harness.owner.subject
    assert check.output == {"approved": True, "decided_by": harness.owner.subject, "comment": "ok"}
    assert "workflow_run.approve" in harness.audit.actions()
    with pytest.raises(Conflict) as again:
        await harness.service.approve(harness.owner, run.id)
    assert again.value.code == "run_not_waiting"


async def test_reject_fails_the_run_at_the_approval(harness: Harness) -> None:
    run = await run_of(harness, approval_flow())
    rejected = await harness.service.reject(harness.owner, run.id, comment="no", wait_s=None)
    assert (rejected.status, rejected.error_code) == ("compensated", "approval_rejected")
    assert rejected.failed_node == "check"
    assert harness.tools.calls == ["a", "undo:a"]
    assert "workflow_run.reject" in harness.audit.actions()


async def test_an_expired_approval_is_rejected(harness: Harness) -> None:
    run = await run_of(harness, approval_flow(timeout_s=60))
    harness.clock.advance(seconds=61)
    details = await harness.service.get_run(harness.owner, run.id)
    assert (details.run.status, details.run.error_code) == ("compensated", "approval_expired")
    assert harness.tools.calls == ["a", "undo:a"]


async def test_approving_too_late_is_a_conflict(harness: Harness) -> None:
    run = await run_of(harness, approval_flow(timeout_s=60))
    harness.clock.advance(minutes=5)
    with pytest.raises(Conflict) as late:
        await harness.service.approve(harness.owner, run.id)
    assert late.value.code == "approval_expired"


async def test_resume_runs_from_the_failed_node_only(harness: Harness) -> None:
    harness.tools.fail_at = {"c"}
    source = workflow(
        record("a", undo=False),
        record("b", undo=False, depends_on=["a"]),
        record("c", undo=False, depends_on=["b"]),
        record("d", undo=False, depends_on=["c"]),
        name="resumable",
        output={"d": "$.nodes.d.output.name", "a": "$.nodes.a.output.name"},
    )
    run = await run_of(harness, source)
    assert run.status == "failed"
    harness.tools.fail_at = set()
    harness.tools.calls.clear()
    resumed = await harness.service.resume(harness.owner, run.id, wait_s=None)
    assert resumed.status == "succeeded"
    assert resumed.output == {"d": "d", "a": "a"}  # a's output came from its earlier run
    assert harness.tools.calls == ["c", "d"]
    assert resumed.error_code is None
    with pytest.raises(Conflict) as again:
        await harness.service.resume(harness.owner, run.id)
    assert again.value.code == "run_not_resumable"


async def test_resume_after_compensation_runs_compensated_nodes_again(harness: Harness) -> None:
    harness.tools.fail_at = {"c"}
    run = await run_of(harness, chain())
    assert run.status == "compensated"
    harness.tools.fail_at = set()
    harness.tools.calls.clear()
    resumed = await harness.service.resume(harness.owner, run.id, wait_s=None)
    assert resumed.status == "succeeded"
    assert harness.tools.calls == ["a", "b", "c", "d"]


async def test_cancel_stops_a_run(harness: Harness) -> None:
    harness.tools.hang = {"b"}
    source = workflow(
        record("a", undo=False),
        record("b", undo=False, depends_on=["a"], timeout_s=60),
        record("c", undo=False, depends_on=["b"]),
    )
    await harness.service.create(harness.owner, source)
    run = await harness.service.start_run(harness.owner, "flow", {})
    await asyncio.wait_for(harness.tools.hanging.wait(), timeout=10)
    cancelled = await harness.service.cancel(harness.owner, run.id)
    assert (cancelled.status, cancelled.error_code) == ("cancelled", "cancelled")
    assert await statuses(harness, run.id) == {"a": "succeeded", "b": "cancelled"}
    assert harness.tools.calls == ["a", "b"]
    with pytest.raises(Conflict):
        await harness.service.cancel(harness.owner, run.id)
    with pytest.raises(Conflict):
        await harness.service.resume(harness.owner, run.id)


async def test_cancel_a_waiting_run(harness: Harness) -> None:
    run = await run_of(harness, approval_flow())
    cancelled = await harness.service.cancel(harness.owner, run.id)
    assert cancelled.status == "cancelled"
    assert (await statuses(harness, run.id))["check"] == "cancelled"
    assert harness.tools.calls == ["a"]  # no compensation on cancel


def transform(node_id: str, expression: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "jmespath": expression, **extra}


async def test_branch_runs_the_chosen_list_and_skips_the_other(harness: Harness) -> None:
    source = workflow(
        transform("size", "length(input.items)"),
        {
            "id": "pick",
            "type": "branch",
            "condition": "nodes.size.output > `2`",
            "then": [record("big", undo=False)],
            "else": [record("small", undo=False), transform("note", "nodes.small.output.name")],
        },
        transform("after", "[nodes.big.output.name, nodes.note.output]"),
        input={"items": {"type": "array"}},
    )
    run = await run_of(harness, source, {"items": [1]})
    assert run.status == "succeeded"
    assert run.output == [None, "small"]
    nodes = await statuses(harness, run.id)
    assert (nodes["big"], nodes["small"], nodes["pick"]) == ("skipped", "succeeded", "succeeded")
    details = await harness.service.get_run(harness.owner, run.id)
    assert next(n for n in details.nodes if n.node_key == "pick").output == {"taken": "else"}


async def test_parallel_and_map_with_bounded_concurrency(harness: Harness) -> None:
    source = workflow(
        {
            "id": "both",
            "type": "parallel",
            "branches": [[transform("left", "input.word")], [transform("right", "input.n")]],
        },
        {
            "id": "each",
            "type": "map",
            "items": "$.input.names",
            "max_concurrency": 2,
            "depends_on": ["both"],
            "nodes": [
                {
                    "id": "call",
                    "type": "tool",
                    "tool": "record",
                    "input": {"name": "{{ item }}-{{ index }}", "value": "$.nodes.left.output"},
                },
                transform("shout", "nodes.call.output"),
            ],
        },
        name="fanout",
        input={"word": {}, "n": {"type": "integer"}, "names": {"type": "array"}},
        output={"both": "$.nodes.both.output", "each": "$.nodes.each.output[*].name"},
    )
    run = await run_of(harness, source, {"word": "hi", "n": 3, "names": ["x", "y", "z"]})
    assert run.status == "succeeded", run.error_message
    assert run.output == {"both": ["hi", 3], "each": ["x-0", "y-1", "z-2"]}
    keys = set(await statuses(harness, run.id))
    assert {"each[0].call", "each[2].shout", "left", "right"} <= keys


async def test_map_resume_reruns_only_failed_items(harness: Harness) -> None:
    harness.tools.fail_at = {"y"}
    source = workflow(
        {
            "id": "each",
            "type": "map",
            "items": "$.input.names",
            "max_concurrency": 1,
            "nodes": [record("call", undo=False, input={"name": "{{ item }}"})],
        },
        input={"names": {"type": "array"}},
    )
    run = await run_of(harness, source, {"names": ["x", "y", "z"]})
    assert (run.status, run.failed_node) == ("failed", "each[1].call")
    assert sorted(harness.tools.calls) == ["x", "y", "z"]  # the other items finished
    harness.tools.fail_at = set()
    harness.tools.calls.clear()
    resumed = await harness.service.resume(harness.owner, run.id, wait_s=None)
    assert resumed.status == "succeeded"
    assert harness.tools.calls == ["y"]
    assert resumed.output == [{"name": n, "value": None} for n in ("x", "y", "z")]


async def test_compensation_inside_a_map_sees_its_item(harness: Harness) -> None:
    harness.tools.fail_at = {"boom"}
    source = workflow(
        {
            "id": "each",
            "type": "map",
            "items": "$.input.names",
            "max_concurrency": 1,
            "nodes": [
                record(
                    "call",
                    undo=False,
                    input={"name": "{{ item }}"},
                    compensation={
                        "type": "tool",
                        "tool": "undo",
                        "input": {"name": "{{ item }}#{{ index }}:{{ nodes.call.output.name }}"},
                    },
                )
            ],
        },
        record("boom", undo=False, depends_on=["each"]),
        input={"names": {"type": "array"}},
    )
    run = await run_of(harness, source, {"names": ["x", "y"]})
    assert run.status == "compensated"
    assert harness.tools.calls == ["x", "y", "boom", "undo:y#1:y", "undo:x#0:x"]


async def test_map_items_must_be_a_bounded_list(make_harness: Any) -> None:
    harness: Harness = await make_harness(max_map_items=2)
    source = workflow(
        {
            "id": "each",
            "type": "map",
            "items": "$.input.names",
            "nodes": [transform("x", "item")],
        },
        input={"names": {"type": "any"}},
    )
    not_a_list = await run_of(harness, source, {"names": "abc"})
    assert (not_a_list.status, not_a_list.error_code) == ("failed", "map_items_not_a_list")
    too_many = await harness.service.start_run(
        harness.owner, "flow", {"names": [1, 2, 3]}, wait_s=None
    )
    assert too_many.error_code == "map_too_many_items"


async def test_a_template_error_fails_the_node(harness: Harness) -> None:
    source = workflow({"id": "t", "type": "transform", "template": "{{ input.missing.deep }}"})
    run = await run_of(harness, source)
    assert (run.status, run.error_code) == ("failed", "expression_error")
