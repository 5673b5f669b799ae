"""The leaf node executors with fake services: http (secrets in headers only, status
handling), generate (extractive and LLM), retrieve, tool and agent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from shared.errors import DependencyUnavailable, InvalidInput, NotFound
from shared.workflows.agent import AgentResult, ToolCallRecord
from shared.workflows.definition import ValidationRules, parse_definition
from shared.workflows.expressions import resolve
from shared.workflows.nodes import AgentBudget, NodeCall, NodeExecutors, NodeResult, Step
from shared.workflows.safe_http import HttpPolicy, SafeHttpClient
from shared.workflows.tools import ToolRegistry, default_tool_registry

pytestmark = pytest.mark.unit

TENANT = uuid.uuid4()
RULES = ValidationRules(llm_configured=True)


class Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reads: list[tuple[uuid.UUID, str]] = []

    async def get(self, tenant_id: uuid.UUID, name: str) -> str:
        self.reads.append((tenant_id, name))
        if name not in self.values:
            raise NotFound(f"secret {name!r} does not exist", code="secret_not_found")
        return self.values[name]


class Queries:
    def __init__(self) -> None:
        self.requests: list[tuple[uuid.UUID, str, Any]] = []

    async def query(
        self, tenant_id: uuid.UUID, kb: str, request: Any, *, principal: Any = None
    ) -> dict[str, Any]:
        self.requests.append((tenant_id, kb, request))
        hit = {"document": "guide.md", "chunk_id": "c1", "page": 2, "text": "Hotels cost 200."}
        return {"hits": [hit], "answer": None}


class Generator:
    def generate(self, question: str, passages: list[str]) -> str:
        return f"Per the guide, {passages[0]} [1] [7]"


class FakeAgent:
    def __init__(self, tools: ToolRegistry, budget: AgentBudget) -> None:
        self.tools = tools
        self.budget = budget

    async def run(self, prompt: str, *, system: str | None = None) -> AgentResult:
        hits = await self.tools.call("search_knowledge_base", {"query": prompt})
        return AgentResult(
            answer=f"{prompt}: {hits['hits'][0]['text']}",
            steps=2,
            tool_calls=[ToolCallRecord("search_knowledge_base", {"query": prompt}, 1.0, hits)],
            input_tokens=10,
            output_tokens=5,
            stop_reason="end_turn",
        )


def executors(
    *,
    respond: Any = None,
    secrets: Secrets | None = None,
    generator: Any = None,
    agents: list[FakeAgent] | None = None,
) -> tuple[NodeExecutors, list[httpx.Request], Queries]:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return respond(request) if respond else httpx.Response(200, json={"id": 7})

    async def resolver(host: str, port: int) -> Sequence[str]:
        return ["93.184.216.34"]

    client = SafeHttpClient(
        HttpPolicy(timeout_s=5, max_response_bytes=10_000, max_redirects=0),
        resolver=resolver,
        transport=httpx.MockTransport(handle),
    )
    queries = Queries()

    def agent_loop(tools: ToolRegistry, budget: AgentBudget) -> Any:
        agent = FakeAgent(tools, budget)
        (agents if agents is not None else []).append(agent)
        return agent

    built = NodeExecutors(
        query_service=lambda: queries,  # type: ignore[arg-type, return-value]
        kbs=lambda: None,  # type: ignore[arg-type, return-value]
        answer_generator=lambda: generator,
        tools=default_tool_registry(),
        http_client=lambda: client,
        secrets=lambda: secrets or Secrets({}),
        agent_loop=agent_loop,
        agent_budget=AgentBudget(max_steps=8, max_tokens=8000, time_budget_s=60),
    )
    return built, sent, queries


def node(spec: dict[str, Any], **input_fields: Any) -> Step:
    definition = parse_definition({"name": "t", "nodes": [spec], **input_fields}, RULES)
    step = definition.nodes[0]
    assert not isinstance(step, str)
    return step  # type: ignore[return-value]


async def run(
    runner: NodeExecutors, step: Step, context: dict[str, Any] | None = None
) -> NodeResult:
    context = context or {"input": {}, "nodes": {}}
    config = resolve(step.templated(), context, keep_secret_templates=True)
    return await runner.run(step, config, NodeCall(TENANT, uuid.uuid4(), "n", context))


HTTP = {
    "id": "call",
    "type": "http",
    "method": "POST",
    "url": "https://crm.example.com/contacts",
    "headers": {"authorization": "Bearer {{ secrets.crm_token }}", "x-run": "{{ input.tag }}"},
    "json": {"email": "$.input.email"},
}


async def test_http_fills_secrets_into_headers_only_at_send_time() -> None:
    secrets = Secrets({"crm_token": "s3cr3t"})
    runner, sent, _ = executors(secrets=secrets)
    step = node(HTTP)
    context = {"input": {"email": "a@b.c", "tag": "t1"}, "nodes": {}}
    config = resolve(step.templated(), context, keep_secret_templates=True)
    assert config["headers"]["authorization"] == "Bearer {{ secrets.crm_token }}"
    assert "s3cr3t" not in json.dumps(config)  # what the engine persists
    result = await runner.run(step, config, NodeCall(TENANT, uuid.uuid4(), "call", context))
    assert sent[0].headers["authorization"] == "Bearer s3cr3t"
    assert sent[0].headers["x-run"] == "t1"
    assert json.loads(sent[0].content) == {"email": "a@b.c"}
    assert secrets.reads == [(TENANT, "crm_token")]
    assert result.output["status"] == 200
    assert result.output["body"] == {"id": 7}


async def test_http_missing_secret_fails_cleanly() -> None:
    runner, sent, _ = executors()
    with pytest.raises(NotFound) as missing:
        await run(runner, node(HTTP), {"input": {"email": "x", "tag": "t"}, "nodes": {}})
    assert missing.value.code == "secret_not_found"
    assert sent == []


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [(503, DependencyUnavailable, "http_unavailable"), (404, InvalidInput, "http_error")],
)
async def test_http_error_statuses(status: int, error: type[Exception], code: str) -> None:
    runner, _, _ = executors(respond=lambda request: httpx.Response(status, text="no"))
    step = node({"id": "get", "type": "http", "url": "https://api.example.com/x"})
    with pytest.raises(error) as caught:
        await run(runner, step)
    assert caught.value.code == code  # type: ignore[attr-defined]


async def test_http_expected_status_and_text_body() -> None:
    runner, _, _ = executors(respond=lambda request: httpx.Response(404, text="gone"))
    step = node(
        {"id": "get", "type": "http", "url": "https://api.example.com/x", "expect_status": [404]}
    )
    result = await run(runner, step)
    assert (result.output["status"], result.output["body"]) == (404, "gone")


async def test_generate_is_extractive_without_an_llm() -> None:
    runner, _, _ = executors()
    step = node(
        {
            "id": "answer",
            "type": "generate",
            "question": "How much do hotels cost?",
            "passages": "$.input.hits",
        },
        input={"hits": {"type": "array"}},
    )
    text = "Hotels in Zurich cost 200 francs per night."
    hits = [{"document": "guide.md", "chunk_id": "c1", "page": 2, "text": text}]
    result = await run(runner, step, {"input": {"hits": hits}, "nodes": {}})
    assert result.output == {
        "text": f"{text} [1]",
        "citations": [{"number": 1, "document": "guide.md", "chunk_id": "c1", "page": 2}],
        "generated": False,
    }


async def test_generate_with_an_llm_keeps_real_citations_only() -> None:
    runner, _, _ = executors(generator=Generator())
    step = node({"id": "g", "type": "generate", "question": "cost?", "passages": ["A.", "B."]})
    result = await run(runner, step)
    assert result.output["text"] == "Per the guide, A. [1]"
    assert result.output["generated"] is True
    bad = node({"id": "g", "type": "generate", "question": "q", "passages": [1]})
    with pytest.raises(InvalidInput):
        await run(runner, bad)


async def test_retrieve_queries_the_runs_tenant() -> None:
    runner, _, queries = executors()
    step = node(
        {"id": "s", "type": "retrieve", "kb": "handbook", "query": "{{ input.q }}", "top_k": "3"},
        input={"q": {}},
    )
    result = await run(runner, step, {"input": {"q": "hotels"}, "nodes": {}})
    tenant, kb, request = queries.requests[0]
    assert (tenant, kb, request.query, request.top_k) == (TENANT, "handbook", "hotels", 3)
    assert result.output["hits"][0]["document"] == "guide.md"
    with pytest.raises(InvalidInput) as bad:
        await run(runner, node({**step.model_dump(), "top_k": "many"}))
    assert bad.value.code == "invalid_node_config"


async def test_tool_node_validates_its_input() -> None:
    runner, _, _ = executors()
    step = node(
        {"id": "t", "type": "tool", "tool": "math_evaluate", "input": {"expression": "2 * 21"}}
    )
    result = await run(runner, step)
    assert result.tools == ("math_evaluate",)
    assert result.output["result"] == 42  # type: ignore[index]
    with pytest.raises(InvalidInput) as invalid:
        await run(runner, node({"id": "t", "type": "tool", "tool": "math_evaluate"}))
    assert invalid.value.code == "invalid_tool_input"


async def test_agent_gets_its_tools_kb_search_and_budget() -> None:
    agents: list[FakeAgent] = []
    runner, _, queries = executors(agents=agents)
    step = node(
        {
            "id": "a",
            "type": "agent",
            "prompt": "hotel budget",
            "tools": ["math_evaluate"],
            "kb": "handbook",
            "max_steps": 3,
        }
    )
    result = await run(runner, step)
    agent = agents[0]
    assert sorted(agent.tools.names()) == ["math_evaluate", "search_knowledge_base"]
    assert agent.budget == AgentBudget(max_steps=3, max_tokens=8000, time_budget_s=60)
    assert result.output["answer"] == "hotel budget: Hotels cost 200."
    assert result.tools == ("search_knowledge_base",)
    assert queries.requests[0][:2] == (TENANT, "handbook")


async def test_agent_without_an_llm_refuses() -> None:
    no_llm = NodeExecutors(
        query_service=lambda: Queries(),  # type: ignore[arg-type, return-value]
        kbs=lambda: None,  # type: ignore[arg-type, return-value]
        answer_generator=lambda: None,
        tools=ToolRegistry(),
        http_client=lambda: None,  # type: ignore[arg-type, return-value]
        secrets=lambda: Secrets({}),
        agent_loop=None,
        agent_budget=AgentBudget(max_steps=1, max_tokens=1, time_budget_s=1),
    )
    with pytest.raises(InvalidInput) as refused:
        await run(no_llm, node({"id": "a", "type": "agent", "prompt": "hi"}))
    assert refused.value.code == "llm_not_configured"
