"""The workflows Lambda on Step Functions task events, in process: each event is the ``Payload``
the compiled state machine sends (rendered from its ``Parameters`` on a state), run through the
container's real node executors on SQLite, and answered as the machine merges it back."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.db.migrate import upgrade
from shared.workflows.asl import compile_workflow
from shared.workflows.definition import ValidationRules, parse_definition
from shared.workflows.task import WorkflowTaskError
from tests.events import FakeLambdaContext

pytestmark = pytest.mark.integration

DEFINITION = {
    "name": "handled",
    "input": {"text": {"type": "string"}, "items": {"type": "array"}},
    "nodes": [
        {
            "id": "count",
            "type": "tool",
            "tool": "text_word_count",
            "input": {"text": "{{ input.text }}"},
            "compensation": {
                "type": "tool",
                "tool": "text_word_count",
                "input": {"text": "undo {{ nodes.count.output.words }}"},
            },
        },
        {
            "id": "pick",
            "type": "branch",
            "depends_on": ["count"],
            "condition": "nodes.count.output.words > `2`",
            "then": [{"id": "long", "type": "transform", "template": "long"}],
            "else": [{"id": "short", "type": "transform", "template": "short"}],
        },
        {
            "id": "each",
            "type": "map",
            "depends_on": ["pick"],
            "items": "$.input.items",
            "nodes": [{"id": "shout", "type": "transform", "template": "{{ item | upper }}"}],
        },
        {"id": "ok", "type": "approval", "depends_on": ["each"], "message": "fine?"},
    ],
    "output": {"words": "$.nodes.count.output.words"},
}
FUNCTION = "quarry-workflows"


@pytest.fixture
def handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path))
    import functions.workflows.app
    import functions.workflows.handler

    importlib.reload(functions.workflows.app)  # the app reads settings at import
    module = importlib.reload(functions.workflows.handler)
    container = module.app.state.container_provider.get()
    upgrade(container.settings.database_url)
    yield module
    importlib.reload(functions.workflows.app)


@pytest.fixture
def machine() -> dict[str, Any]:
    definition = parse_definition(DEFINITION, ValidationRules())
    asl = compile_workflow(
        definition, step_function_arn=FUNCTION, default_timeout_s=10, default_approval_timeout_s=60
    )
    states: dict[str, Any] = dict(asl["States"])
    states.update(states["each.each"]["ItemProcessor"]["States"])
    return states


class Run:
    """A stored workflow and a run of it, and the state the machine would hand on."""

    def __init__(self, handler: Any) -> None:
        from functions.common.lambda_entry import run_async

        self.handler = handler
        self.container = handler.app.state.container_provider.get()
        repository = self.container.workflow_repository

        async def create() -> tuple[uuid.UUID, Any]:
            tenant = await self.container.kb_repository.ensure_tenant(f"t-{uuid.uuid4().hex}")
            workflow = await repository.add_version(
                tenant, "handled", DEFINITION, description="", created_by="t", new=True
            )
            run = await repository.create_run(
                tenant, workflow, {"text": "one two three", "items": ["a", "b"]}, started_by="t"
            )
            return tenant, run

        self.tenant_id, self.run = run_async(create())
        self.state: dict[str, Any] = {
            "run_id": str(self.run.id),
            "tenant_id": str(self.tenant_id),
            "key_prefix": "",
            "context": {"input": self.run.input, "nodes": {}},
        }

    def event(self, state: dict[str, Any], **context_object: Any) -> dict[str, Any]:
        """The Payload a Task state sends, rendered from its Parameters on ``self.state``."""
        return _render(state["Parameters"]["Payload"], self.state, context_object)

    def invoke(self, event: dict[str, Any]) -> Any:
        return self.handler.lambda_handler(event, FakeLambdaContext())

    def nodes(self) -> dict[str, tuple[str, int]]:
        from functions.common.lambda_entry import run_async

        rows = run_async(self.container.workflow_repository.node_runs(self.tenant_id, self.run.id))
        return {row.node_key: (row.status, row.attempt) for row in rows}

    def row(self, key: str) -> Any:
        from functions.common.lambda_entry import run_async

        rows = run_async(self.container.workflow_repository.node_runs(self.tenant_id, self.run.id))
        return next(row for row in rows if row.node_key == key)

    def status(self) -> Any:
        from functions.common.lambda_entry import run_async

        return run_async(self.container.workflow_repository.get_run(self.tenant_id, self.run.id))


def _render(template: Any, state: dict[str, Any], context_object: dict[str, Any]) -> Any:
    """ASL Parameters: ``"<key>.$"`` takes a path of the state (``$.``) or of the context
    object (``$$.``: here ``State.RetryCount`` and ``Task.Token``)."""
    if isinstance(template, dict):
        rendered: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$"):
                rendered[key[:-2]] = _path(value, state, context_object)
            else:
                rendered[key] = _render(value, state, context_object)
        return rendered
    return template


def _path(path: str, state: dict[str, Any], context_object: dict[str, Any]) -> Any:
    if path.startswith("$$."):
        return context_object[path[3:]]
    value: Any = state
    for part in path.removeprefix("$").strip(".").split("."):
        if part:
            value = value[part]
    return value


def test_a_leaf_task_runs_the_node_and_answers_its_record(
    handler: Any, machine: dict[str, Any]
) -> None:
    run = Run(handler)
    answer = run.invoke(run.event(machine["count"], **{"State.RetryCount": 1}))
    assert answer == {
        "status": "succeeded",
        "output": {"words": 3, "sentences": 1, "characters": 13},
    }
    assert run.nodes() == {"count": ("succeeded", 2)}  # the second attempt
    # Invoked again (Lambda retried the invocation): the node does not run again.
    assert run.invoke(run.event(machine["count"], **{"State.RetryCount": 2})) == answer
    assert run.nodes() == {"count": ("succeeded", 2)}


def test_a_branch_task_answers_the_new_context(handler: Any, machine: dict[str, Any]) -> None:
    run = Run(handler)
    run.state["context"]["nodes"]["count"] = {"status": "succeeded", "output": {"words": 3}}
    context = run.invoke(run.event(machine["pick"], **{"State.RetryCount": 0}))
    assert context["input"] == run.run.input
    assert context["nodes"]["pick"] == {"status": "succeeded", "output": {"taken": "then"}}
    assert context["nodes"]["short"] == {"status": "skipped", "output": None}
    assert run.nodes()["short"] == ("skipped", 0)


def test_a_map_task_resolves_the_items_and_the_body_runs_per_item(
    handler: Any, machine: dict[str, Any]
) -> None:
    run = Run(handler)
    assert run.invoke(run.event(machine["each"], **{"State.RetryCount": 0})) == {
        "items": ["a", "b"]
    }
    # An iteration's state, as the Map state's ItemSelector builds it.
    run.state["key_prefix"] = "each[1]."
    run.state["context"].update(item="b", index=1)
    answer = run.invoke(run.event(machine["shout"], **{"State.RetryCount": 0}))
    assert answer == {"status": "succeeded", "output": "B"}
    assert run.nodes() == {"each": ("running", 1), "each[1].shout": ("succeeded", 1)}


def test_an_approval_task_records_its_token_and_pauses_the_run(
    handler: Any, machine: dict[str, Any]
) -> None:
    run = Run(handler)
    assert run.invoke(run.event(machine["ok"], **{"Task.Token": "token-1"})) == {}
    row = run.row("ok")
    assert (row.status, row.task_token, row.input) == (
        "waiting_approval",
        "token-1",
        {"message": "fine?"},
    )
    assert row.expires_at is not None
    assert run.status().status == "waiting_approval"


def test_the_end_tasks_record_success_and_failure(handler: Any, machine: dict[str, Any]) -> None:
    run = Run(handler)
    run.invoke(run.event(machine["count"], **{"State.RetryCount": 0}))
    run.state["context"]["nodes"]["count"] = {"status": "succeeded", "output": {"words": 3}}
    answer = run.invoke(run.event(machine["RecordSuccess"]))
    assert answer == {"output": {"words": 3}}
    assert (run.status().status, run.status().output) == ("succeeded", {"words": 3})

    failing = Run(handler)
    failing.invoke(failing.event(machine["count"], **{"State.RetryCount": 0}))
    compensation = failing.event(machine["count.compensate"], **{"State.RetryCount": 0})
    assert compensation["compensate"] is True
    assert failing.invoke(compensation) == {}
    assert failing.nodes() == {"count": ("compensated", 1)}
    failing.state["error"] = {
        "Error": "caller_error",
        "Cause": '{"errorType": "caller_error", "errorMessage": '
        '"{\\"node\\": \\"pick\\", \\"code\\": \\"expression_error\\", \\"message\\": \\"bad\\"}"}',
    }
    assert failing.invoke(failing.event(machine["RecordFailure"])) == {"status": "compensated"}
    ended = failing.status()
    assert (ended.status, ended.failed_node, ended.error_code) == (
        "compensated",
        "pick",
        "expression_error",
    )


def test_a_failed_node_raises_an_error_named_for_the_retriers(
    handler: Any, machine: dict[str, Any]
) -> None:
    run = Run(handler)
    run.state["context"]["input"] = {"text": None, "items": []}  # not a text: the tool refuses
    with pytest.raises(WorkflowTaskError) as caught:
        run.invoke(run.event(machine["count"], **{"State.RetryCount": 0}))
    assert type(caught.value).__name__ == "caller_error"
    assert caught.value.node_key == "count"
    assert run.nodes() == {"count": ("failed", 1)}


def test_a_malformed_event_is_the_callers_error(handler: Any) -> None:
    with pytest.raises(WorkflowTaskError) as caught:
        handler.lambda_handler({"kind": "workflow_node", "node": "x"}, FakeLambdaContext())
    assert (type(caught.value).__name__, caught.value.code) == ("caller_error", "bad_task")


def test_a_task_acts_for_the_runs_starter(handler: Any) -> None:
    """On Step Functions as locally, a retrieve node reaches only the KBs its starter may read."""
    from functions.common.lambda_entry import run_async
    from shared.auth.authenticator import principal_context
    from shared.auth.rbac import Principal, Role
    from shared.kb.service import KbSpec
    from shared.workflows.task import WorkflowTaskError

    container = handler.app.state.container_provider.get()
    repository = container.workflow_repository
    definition = {
        "name": "peek",
        "nodes": [{"id": "search", "type": "retrieve", "kb": "secret", "query": "salaries"}],
    }

    async def create() -> tuple[uuid.UUID, Any]:
        tenant = await container.kb_repository.ensure_tenant(f"t-{uuid.uuid4().hex}")
        kb = await container.kb_service.create(tenant, KbSpec(name="secret"))
        await container.kb_repository.replace_access(tenant, kb.id, True, [])
        workflow = await repository.add_version(
            tenant, "peek", definition, description="", created_by="t", new=True
        )
        member = Principal("user", tenant, Role.MEMBER, frozenset({"*"}), user_id=uuid.uuid4())
        run = await repository.create_run(
            tenant, workflow, {}, started_by=member.subject, acting_as=principal_context(member)
        )
        return tenant, run

    tenant, run = run_async(create())
    event = {
        "kind": "workflow_node",
        "run_id": str(run.id),
        "tenant_id": str(tenant),
        "node": "search",
        "context": {"input": {}, "nodes": {}},
    }
    with pytest.raises(WorkflowTaskError) as refused:
        handler.lambda_handler(event, FakeLambdaContext())
    assert refused.value.code == "kb_not_found"
