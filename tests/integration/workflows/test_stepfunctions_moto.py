"""Workflows compiled to ASL and executed by moto's Step Functions interpreter
(``execute_state_machine``), every task run by the real step runner (``WorkflowTasks`` on
SQLite), compared with the local engine running the same definition.

How the tasks reach the runner: moto runs Pass, Choice, Parallel, Map, Retry, Catch, Fail and
task tokens for real, and invokes the Lambda task through its mocked Lambda API; these tests route
those invocations to the workflows step function itself (``tests.fixtures.moto_lambda``): the
event goes to ``WorkflowTasks.run`` and a ``WorkflowTaskError`` comes back as a function error
named by its class, as Lambda reports it.

What the nodes do is under the tests' control and the same for both runs: tool nodes call the
recording test tools of ``ToolBox`` (failures, flaky errors, refusals on demand) through the real
node executors, transforms run for real, and retrieve/generate/http nodes answer canned outputs.
An approval is decided as the service does it: the node and the run are updated, then the token
is sent (``SendTaskSuccess``/``SendTaskFailure``) or, locally, the engine goes on.

moto runs the machine in threads of its own; all database work happens on one event loop in a
thread of its own (``LoopThread``), which the function's tasks and the test share.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared.db.engine import Database
from shared.db.migrate import upgrade
from shared.db.models import Tenant, Workflow, WorkflowNodeRun, WorkflowRun
from shared.db.workflow_repository import WorkflowRepository
from shared.errors import DependencyUnavailable
from shared.observability.metrics import PrometheusMetrics
from shared.workflows.asl import compile_workflow
from shared.workflows.definition import (
    GenerateNode,
    HttpCompensation,
    HttpConfig,
    RetrieveNode,
    ValidationRules,
    WorkflowDefinition,
    parse_definition,
)
from shared.workflows.engine import (
    APPROVAL_REJECTED,
    NodeFailed,
    NodeStatus,
    RunStatus,
    WorkflowEngine,
)
from shared.workflows.nodes import AgentBudget, NodeCall, NodeExecutors, NodeResult, Step
from shared.workflows.task import WorkflowTaskError, WorkflowTasks
from shared.workflows.tools import default_tool_registry
from tests.fixtures.aws import REGION
from tests.fixtures.event_loop_thread import LoopThread
from tests.fixtures.moto_lambda import (
    create_placeholder_function,
    create_role,
    executing_mock_aws,
    route_invokes,
)
from tests.integration.workflows.conftest import POOL, ToolBox, record, workflow

pytestmark = pytest.mark.integration

FUNCTION = "quarry-workflows"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "workflows"
RULES = ValidationRules()
CONTAINER_TYPES = ("branch", "parallel", "map")


# --- the harness ------------------------------------------------------------------------------
class Executor:
    """The real node executors over the test tools (and the built-in ones), except that
    retrieve, generate and http steps answer the canned output of their node id (an exception
    is raised); compensations as ``<id>.compensate``. Every call is noted in ``tools.calls``."""

    def __init__(self, tools: ToolBox, canned: Mapping[str, Any]) -> None:
        self.tools = tools
        self.canned = canned
        registry = tools.registry()
        built_in = default_tool_registry()
        for name in built_in.names():
            registry.register(built_in.get(name))
        self.real = NodeExecutors(
            query_service=_unavailable,
            kbs=_unavailable,
            answer_generator=lambda: None,
            tools=registry,
            http_client=_unavailable,
            secrets=_unavailable,
            agent_loop=None,
            agent_budget=AgentBudget(max_steps=2, max_tokens=100, time_budget_s=5),
        )

    async def run(self, step: Step, config: dict[str, Any], call: NodeCall) -> NodeResult:
        if isinstance(step, RetrieveNode | GenerateNode | HttpConfig):
            node_id = call.node_key.rsplit(".", 1)[-1]
            name = f"{node_id}.compensate" if isinstance(step, HttpCompensation) else node_id
            self.tools.calls.append(name)
            value = self.canned[name]
            if isinstance(value, Exception):
                raise value
            return NodeResult(value)
        return await self.real.run(step, config, call)


def _unavailable() -> Any:
    raise AssertionError("not available to these tests")


@dataclass
class Outcome:
    status: str
    error_code: str | None
    failed_node: str | None
    output: Any
    nodes: dict[str, str]  # node key -> status
    calls: list[str]  # tool calls, canned calls, undo:<id> for compensations
    entered: list[str] = field(default_factory=list)  # states entered (Step Functions only)
    execution: dict[str, Any] = field(default_factory=dict)

    @property
    def undo_order(self) -> list[str]:
        return [call for call in self.calls if call.startswith("undo:") or ".compensate" in call]


# Whether the reviewer approves this waiting approval.
Decide = Callable[[WorkflowNodeRun], bool]
Setup = Callable[[ToolBox], None]


@dataclass
class World:
    loop: LoopThread
    database: Database
    repository: WorkflowRepository
    tenant_id: uuid.UUID
    role_arn: str
    current: list[WorkflowTasks] = field(default_factory=list)
    stored: dict[str, Workflow] = field(default_factory=dict)
    machines: int = 0

    def store(self, source: Any) -> tuple[Workflow, WorkflowDefinition]:
        definition = parse_definition(source, RULES)
        workflow_row = self.stored.get(definition.name)
        if workflow_row is None:
            workflow_row = self.loop.run(
                self.repository.add_version(
                    self.tenant_id,
                    definition.name,
                    definition.to_document(),
                    description=definition.description,
                    created_by="test",
                    new=True,
                )
            )
            self.stored[definition.name] = workflow_row
        return workflow_row, WorkflowDefinition.model_validate(workflow_row.definition)

    def new_run(self, source: Any, run_input: dict[str, Any]) -> tuple[WorkflowRun, Any]:
        workflow_row, definition = self.store(source)
        checked = definition.validate_input(run_input)
        run = self.loop.run(
            self.repository.create_run(self.tenant_id, workflow_row, checked, started_by="test")
        )
        return run, definition

    def outcome(self, run_id: uuid.UUID, tools: ToolBox) -> Outcome:
        run = self.loop.run(self.repository.get_run(self.tenant_id, run_id))
        rows = self.loop.run(self.repository.node_runs(self.tenant_id, run_id))
        return Outcome(
            status=run.status,
            error_code=run.error_code,
            failed_node=run.failed_node,
            output=run.output,
            nodes={row.node_key: row.status for row in rows},
            calls=list(tools.calls),
        )

    async def _decide(
        self, run_id: uuid.UUID, row: WorkflowNodeRun, approved: bool
    ) -> dict[str, Any]:
        """What the service does when someone decides: the node, then the run."""
        decision = {"approved": approved, "decided_by": "reviewer", "comment": None}
        await self.repository.transition_node(
            self.tenant_id,
            run_id,
            row.node_key,
            from_status=NodeStatus.WAITING_APPROVAL,
            to_status=NodeStatus.SUCCEEDED if approved else NodeStatus.FAILED,
            output=decision,
            decided_by="reviewer",
            decision="approved" if approved else "rejected",
            error_code=None if approved else APPROVAL_REJECTED,
            error_message=None if approved else "rejected by reviewer",
        )
        await self.repository.transition_run(
            self.tenant_id,
            run_id,
            from_statuses=[RunStatus.WAITING_APPROVAL],
            to_status=RunStatus.RUNNING,
        )
        return decision

    def waiting(self, run_id: uuid.UUID) -> list[WorkflowNodeRun]:
        rows = self.loop.run(self.repository.node_runs(self.tenant_id, run_id))
        return [r for r in rows if r.status == NodeStatus.WAITING_APPROVAL]

    # --- the two ways to run ---------------------------------------------------------------
    def on_stepfunctions(
        self,
        source: Any,
        run_input: dict[str, Any],
        *,
        setup: Setup = lambda tools: None,
        canned: Mapping[str, Any] | None = None,
        decide: Decide = lambda row: True,
    ) -> Outcome:
        tools = ToolBox()
        setup(tools)
        run, definition = self.new_run(source, run_input)
        self.current[:] = [
            WorkflowTasks(
                self.repository,
                Executor(tools, canned or {}),
                PrometheusMetrics(),
                default_timeout_s=5,
                default_approval_timeout_s=3600,
                max_map_items=100,
            )
        ]
        asl = compile_workflow(
            definition,
            step_function_arn=FUNCTION,
            default_timeout_s=5,
            default_approval_timeout_s=3600,
        )
        sfn = boto3.client("stepfunctions", region_name=REGION)
        self.machines += 1
        machine = sfn.create_state_machine(
            name=f"{definition.name}-{self.machines}",
            definition=json.dumps(asl),
            roleArn=self.role_arn,
        )["stateMachineArn"]
        execution_input = {
            "run_id": str(run.id),
            "tenant_id": str(self.tenant_id),
            "input": run.input,
        }
        execution = sfn.start_execution(
            stateMachineArn=machine, name=str(run.id), input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + 60
        decided: set[str] = set()
        while True:
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING" or time.monotonic() > deadline:
                break
            for row in self.waiting(run.id):
                if row.node_key in decided or row.task_token is None:
                    continue
                decided.add(row.node_key)
                approved = decide(row)
                decision = self.loop.run(self._decide(run.id, row, approved))
                if approved:
                    sfn.send_task_success(taskToken=row.task_token, output=json.dumps(decision))
                else:
                    cause = {"node": row.node_key, "code": APPROVAL_REJECTED, "message": "no"}
                    sfn.send_task_failure(
                        taskToken=row.task_token, error=APPROVAL_REJECTED, cause=json.dumps(cause)
                    )
            time.sleep(0.05)
        history = sfn.get_execution_history(executionArn=execution)["events"]
        outcome = self.outcome(run.id, tools)
        outcome.entered = [
            e["stateEnteredEventDetails"]["name"]
            for e in history
            if "stateEnteredEventDetails" in e
        ]
        outcome.execution = dict(described)
        return outcome

    def locally(
        self,
        source: Any,
        run_input: dict[str, Any],
        *,
        setup: Setup = lambda tools: None,
        canned: Mapping[str, Any] | None = None,
        decide: Decide = lambda row: True,
    ) -> Outcome:
        tools = ToolBox()
        setup(tools)
        run, definition = self.new_run(source, run_input)

        async def no_sleep(_seconds: float) -> None:
            return None

        engine = WorkflowEngine(
            self.repository,
            Executor(tools, canned or {}),
            PrometheusMetrics(),
            default_timeout_s=5,
            default_approval_timeout_s=3600,
            max_map_items=100,
            sleep=no_sleep,
        )

        async def execute() -> None:
            current = await engine.execute(run, definition)
            while current.status == RunStatus.WAITING_APPROVAL:
                rows = await self.repository.node_runs(self.tenant_id, run.id)
                row = next(r for r in rows if r.status == NodeStatus.WAITING_APPROVAL)
                approved = decide(row)
                await self._decide(run.id, row, approved)
                if approved:
                    current = await engine.execute(current, definition)
                else:
                    failure = NodeFailed(row.node_key, APPROVAL_REJECTED, "rejected by reviewer")
                    await engine.fail(current, definition, failure)
                    break

        self.loop.run(execute())
        return self.outcome(run.id, tools)

    def both(self, source: Any, run_input: dict[str, Any], **options: Any) -> Outcome:
        """Runs on both; asserts they agree (the nodes that ran and how they ended, the
        compensation order, the output) and that the machine entered the state of every node
        that ran; the Step Functions run. Containers' own rows are compared where the run
        succeeded (after a rejected approval the engine leaves its paused containers
        ``running``; the machine marks them ``failed``)."""
        local = self.locally(source, run_input, **options)
        cloud = self.on_stepfunctions(source, run_input, **options)
        assert cloud.status == local.status, (cloud.execution, cloud.entered)
        assert (cloud.failed_node, cloud.error_code) == (local.failed_node, local.error_code)
        _, definition = self.store(source)
        graph = definition.graph
        containers = {i for i in graph.node_ids() if graph.node(i).type in CONTAINER_TYPES}

        def compared(nodes: dict[str, str]) -> dict[str, str]:
            if cloud.status == "succeeded":
                return nodes
            return {k: v for k, v in nodes.items() if k.rsplit(".", 1)[-1] not in containers}

        assert compared(cloud.nodes) == compared(local.nodes)
        assert sorted(cloud.calls) == sorted(local.calls)
        assert cloud.undo_order == local.undo_order
        assert cloud.output == local.output
        entered = {name for name in cloud.entered if name in graph.node_ids()}
        ran = {key.rsplit(".", 1)[-1] for key, status in cloud.nodes.items() if status != "skipped"}
        assert entered == ran
        return cloud


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_credentials: None
) -> Iterator[World]:
    url = f"sqlite+aiosqlite:///{(tmp_path / 'workflows.db').as_posix()}"
    upgrade(url)
    loop = LoopThread()
    database = Database(url, POOL)

    async def tenant() -> uuid.UUID:
        async with database.session() as session:
            row = Tenant(name=f"tenant-{uuid.uuid4().hex[:8]}")
            session.add(row)
        return row.id

    try:
        with executing_mock_aws():
            role = create_role("workflows")
            create_placeholder_function(FUNCTION, role)
            built = World(loop, database, WorkflowRepository(database), loop.run(tenant()), role)

            def step_function(task: Any) -> Any:
                return loop.run(built.current[0].run(task))

            route_invokes(monkeypatch, step_function, function_errors=(WorkflowTaskError,))
            yield built
    finally:
        loop.run(database.aclose())
        loop.close()


# --- control flow -----------------------------------------------------------------------------
def branching() -> dict[str, Any]:
    return workflow(
        record("first", undo=False),
        {
            "id": "pick",
            "type": "branch",
            "condition": "input.flag",
            "depends_on": ["first"],
            "then": [record("yes", undo=False)],
            "else": [record("no", undo=False), record("no_more", undo=False)],
        },
        {
            "id": "after",
            "type": "transform",
            "depends_on": ["pick"],
            "jmespath": "{taken: nodes.pick.output.taken, yes: nodes.yes.status}",
        },
        name="branching",
        input={"flag": {"type": "boolean"}},
    )


@pytest.mark.parametrize("flag", [True, False])
def test_branch_takes_the_same_chain(world: World, flag: bool) -> None:
    outcome = world.both(branching(), {"flag": flag})
    assert outcome.status == "succeeded"
    taken = "then" if flag else "else"
    assert outcome.output == {"taken": taken, "yes": "succeeded" if flag else "skipped"}
    chain = ["yes"] if flag else ["no", "no_more"]
    assert outcome.entered == ["Start", "first", "pick", "pick.choice", *chain, "pick.join",
                               "after", "RecordSuccess", "Succeeded"]  # fmt: skip


def test_a_flaky_node_is_retried_then_succeeds(world: World) -> None:
    source = workflow(record("flaky", undo=False, retry={"attempts": 3}), name="flaky")

    def setup(tools: ToolBox) -> None:
        tools.flaky = {"flaky": 1}

    outcome = world.both(source, {}, setup=setup)
    assert outcome.status == "succeeded"
    assert outcome.calls == ["flaky", "flaky"]
    assert outcome.entered.count("flaky") == 1  # a retry does not enter the state again
    rows = world.loop.run(world.repository.node_runs(world.tenant_id, _run_id(outcome)))
    assert [row.attempt for row in rows] == [2]


def test_a_callers_error_is_not_retried(world: World) -> None:
    source = workflow(record("strict", retry={"attempts": 3}), name="strict")

    def setup(tools: ToolBox) -> None:
        tools.refuse_at = {"strict"}

    outcome = world.both(source, {}, setup=setup)
    assert (outcome.status, outcome.error_code) == ("compensated", "refused")
    assert outcome.calls == ["strict"]


def chain_of(*names: str) -> dict[str, Any]:
    nodes = [record(names[0])]
    for previous, node_id in itertools.pairwise(names):
        nodes.append(record(node_id, depends_on=[previous]))
    return workflow(*nodes, name="chain")


def test_a_failure_compensates_completed_nodes_in_reverse(world: World) -> None:
    def setup(tools: ToolBox) -> None:
        tools.fail_at = {"c"}

    outcome = world.both(chain_of("a", "b", "c", "d"), {}, setup=setup)
    assert (outcome.status, outcome.failed_node, outcome.error_code) == (
        "compensated",
        "c",
        "node_error",
    )
    assert outcome.calls == ["a", "b", "c", "undo:b", "undo:a"]
    assert outcome.nodes == {"a": "compensated", "b": "compensated", "c": "failed"}
    assert outcome.execution["error"] == "WorkflowCompensated"
    assert outcome.entered[-6:] == [
        "c.compensate",  # entered at the failed node itself: nothing of it completed
        "b.compensate",
        "a.compensate",
        "RecordFailure",
        "Outcome",
        "Compensated",
    ]


def test_a_failed_compensation_ends_the_run_failed(world: World) -> None:
    def setup(tools: ToolBox) -> None:
        tools.fail_at = {"c"}
        tools.undo_fails_at = {"b"}

    outcome = world.both(chain_of("a", "b", "c"), {}, setup=setup)
    assert outcome.status == "failed"
    assert outcome.nodes == {"a": "compensated", "b": "compensation_failed", "c": "failed"}
    assert outcome.undo_order == ["undo:b", "undo:a"]
    assert outcome.execution["error"] == "WorkflowFailed"


def test_map_runs_its_body_per_item(world: World) -> None:
    source = workflow(
        {
            "id": "each",
            "type": "map",
            "items": "$.input.names",
            "max_concurrency": 2,
            "nodes": [
                {
                    "id": "one",
                    "type": "tool",
                    "tool": "record",
                    "input": {"name": "{{ item }}", "value": "$.index"},
                    "compensation": {
                        "type": "tool",
                        "tool": "undo",
                        "input": {"name": "{{ item }}"},
                    },
                },
                {"id": "shout", "type": "transform", "template": "{{ item | upper }}!"},
            ],
        },
        {
            "id": "done",
            "type": "transform",
            "depends_on": ["each"],
            "jmespath": "nodes.each.output",
        },
        name="mapping",
        input={"names": {"type": "array"}},
    )
    outcome = world.both(source, {"names": ["ann", "bob", "cy"]})
    assert outcome.status == "succeeded"
    assert outcome.output == ["ANN!", "BOB!", "CY!"]
    assert sorted(outcome.calls) == ["ann", "bob", "cy"]
    assert outcome.nodes["each[2].one"] == "succeeded"
    assert outcome.nodes["each"] == "succeeded"


def test_a_failure_inside_a_map_compensates_every_item_done(world: World) -> None:
    source = workflow(
        record("before"),
        {
            "id": "each",
            "type": "map",
            "items": "$.input.names",
            "depends_on": ["before"],
            "max_concurrency": 1,
            "nodes": [
                {
                    "id": "one",
                    "type": "tool",
                    "tool": "record",
                    "input": {"name": "{{ item }}"},
                    "compensation": {
                        "type": "tool",
                        "tool": "undo",
                        "input": {"name": "{{ item }}"},
                    },
                }
            ],
        },
        name="mapping_fails",
        input={"names": {"type": "array"}},
    )

    def setup(tools: ToolBox) -> None:
        tools.fail_at = {"cy"}

    outcome = world.both(source, {"names": ["ann", "bob", "cy"]}, setup=setup)
    assert (outcome.status, outcome.failed_node) == ("compensated", "each[2].one")
    assert outcome.undo_order == ["undo:bob", "undo:ann", "undo:before"]
    assert outcome.nodes["each"] == "failed"


def test_parallel_branches_all_run(world: World) -> None:
    source = workflow(
        {
            "id": "fan",
            "type": "parallel",
            "branches": [
                [record("left", undo=False)],
                [
                    record("right", undo=False),
                    {
                        "id": "right_len",
                        "type": "transform",
                        "depends_on": ["right"],
                        "jmespath": "nodes.right.output.name",
                    },
                ],
            ],
        },
        {
            "id": "joined",
            "type": "transform",
            "depends_on": ["fan"],
            "jmespath": "{all: nodes.fan.output, left: nodes.left.output.name}",
        },
        name="fanning",
    )
    outcome = world.both(source, {})
    assert outcome.status == "succeeded"
    assert outcome.output == {
        "all": [{"name": "left", "value": None}, "right"],
        "left": "left",
    }
    assert {"left", "right", "right_len", "fan", "fan.merge"} <= set(outcome.entered)


def approving() -> dict[str, Any]:
    return workflow(
        record("prepare"),
        {
            "id": "check",
            "type": "approval",
            "depends_on": ["prepare"],
            "message": "Release {{ nodes.prepare.output.name }}?",
        },
        {
            "id": "release",
            "type": "transform",
            "depends_on": ["check"],
            "jmespath": "nodes.check.output",
        },
        name="approving",
    )


def test_approval_waits_for_the_token_then_goes_on(world: World) -> None:
    outcome = world.both(approving(), {})
    assert outcome.status == "succeeded"
    assert outcome.output == {"approved": True, "decided_by": "reviewer", "comment": None}
    assert outcome.nodes["check"] == "succeeded"


def test_a_rejected_approval_fails_the_run_and_compensates(world: World) -> None:
    outcome = world.both(approving(), {}, decide=lambda row: False)
    assert (outcome.status, outcome.failed_node, outcome.error_code) == (
        "compensated",
        "check",
        APPROVAL_REJECTED,
    )
    assert outcome.undo_order == ["undo:prepare"]
    assert outcome.nodes == {"prepare": "compensated", "check": "failed"}


def test_approval_task_records_its_token(world: World) -> None:
    """The token the machine hands the function is the one stored with the approval (checked
    while the execution waits)."""
    tokens: list[str] = []

    def decide(row: WorkflowNodeRun) -> bool:
        assert row.task_token is not None
        tokens.append(row.task_token)
        assert row.expires_at is not None
        return True

    outcome = world.on_stepfunctions(approving(), {}, decide=decide)
    assert outcome.status == "succeeded"
    assert len(tokens) == 1


# --- the examples -----------------------------------------------------------------------------
HITS = [{"document": "guide.md", "chunk_id": "c1", "page": 1, "text": "Hotels cost 200 CHF."}]
EXAMPLE_RUNS: dict[str, tuple[str, dict[str, Any], dict[str, Any], Decide]] = {
    "digest": (
        "research-digest",
        {"texts": ["Glaciers shrink. Ask ice@example.org.", "Snow cover fell by a tenth."]},
        {},
        lambda row: True,
    ),
    "triage-urgent": (
        "ticket-triage",
        {"subject": "Refund", "body": "Please refund 120 EUR. URGENT", "amount": 120},
        {},
        lambda row: True,
    ),
    "triage-calm": ("ticket-triage", {"subject": "Q", "body": "hello"}, {}, lambda row: True),
    "triage-rejected": (
        "ticket-triage",
        {"subject": "Refund", "body": "URGENT", "amount": 500},
        {},
        lambda row: False,
    ),
    "rag-answered": (
        "rag-answer-with-approval",
        {"question": "What do hotels cost?"},
        {
            "search": {"hits": HITS, "answer": None},
            "answer": {"text": "200 CHF [1]", "citations": [{"number": 1}], "generated": False},
        },
        lambda row: True,
    ),
    "rag-no-answer": (
        "rag-answer-with-approval",
        {"question": "Who won?"},
        {
            "search": {"hits": [], "answer": None},
            "answer": {"text": "", "citations": [], "generated": False},
        },
        lambda row: True,
    ),
    "crm-hot": (
        "crm-enrichment",
        {"email": "ceo@big.example", "company": "Big"},
        {
            "lookup": {"status": 200, "headers": {}, "body": {"employees": 900, "industry": "x"}},
            "file": {"status": 201, "headers": {}, "body": {"id": "lead-1"}},
            "notify": {"status": 200, "headers": {}, "body": "ok"},
        },
        lambda row: True,
    ),
    "crm-notify-fails": (
        "crm-enrichment",
        {"email": "ceo@big.example", "company": "Big"},
        {
            "lookup": {"status": 200, "headers": {}, "body": {"employees": 900}},
            "file": {"status": 201, "headers": {}, "body": {"id": "lead-2"}},
            "notify": DependencyUnavailable("chat is down", code="http_unavailable"),
            "file.compensate": {"status": 204, "headers": {}, "body": ""},
        },
        lambda row: True,
    ),
    "crm-small": (
        "crm-enrichment",
        {"email": "me@small.example", "company": "Small"},
        {
            "lookup": {"status": 200, "headers": {}, "body": {"employees": 3}},
            "file": {"status": 201, "headers": {}, "body": {"id": "lead-3"}},
        },
        lambda row: True,
    ),
}


def test_every_example_has_a_run() -> None:
    assert {example for example, *_ in EXAMPLE_RUNS.values()} == {
        path.stem for path in EXAMPLES.glob("*.yaml")
    }


@pytest.mark.parametrize("case", EXAMPLE_RUNS)
def test_examples_take_the_same_path_on_step_functions(world: World, case: str) -> None:
    name, run_input, canned, decide = EXAMPLE_RUNS[case]
    source = (EXAMPLES / f"{name}.yaml").read_text()
    outcome = world.both(source, run_input, canned=canned, decide=decide)
    expected = {
        "triage-rejected": "failed",
        "crm-notify-fails": "compensated",
    }.get(case, "succeeded")
    assert outcome.status == expected, outcome.execution


def _run_id(outcome: Outcome) -> uuid.UUID:
    return uuid.UUID(str(outcome.execution["name"]))
