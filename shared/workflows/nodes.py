"""What the leaf nodes do: retrieve, generate, http, transform, tool and agent.

The engine resolves a node's templated fields on the run context and hands the result here
(``config``, keyed as in the definition); retries, timeouts and persistence are the engine's.
Containers (branch, parallel, map) and approvals are the engine's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.auth.rbac import Permission, Principal
from shared.errors import DependencyUnavailable, InvalidInput
from shared.query.answer import AnswerGenerator, extractive_answer, generated_answer
from shared.query.service import QueryRequest
from shared.workflows.definition import (
    AgentNode,
    GenerateNode,
    HttpCompensation,
    HttpConfig,
    HttpNode,
    LeafNode,
    RetrieveNode,
    ToolCompensation,
    ToolConfig,
    TransformNode,
)
from shared.workflows.expressions import is_template, render, search, template_usage
from shared.workflows.tools import Tool, ToolRegistry

if TYPE_CHECKING:
    from shared.kb.service import KbService
    from shared.query.service import QueryService
    from shared.workflows.agent import AgentLoop
    from shared.workflows.safe_http import SafeHttpClient

# What a node or a compensation runs.
Step = LeafNode | HttpCompensation | ToolCompensation
KB_SEARCH_TOOL = "search_knowledge_base"
KB_SEARCH_HITS = 5


@dataclass(frozen=True)
class NodeCall:
    """Who runs the step and on what: the run's tenant and the context the step sees."""

    tenant_id: uuid.UUID
    run_id: uuid.UUID
    node_key: str
    context: Mapping[str, Any]
    # Whom the run acts for; None for runs from before it was recorded (tenant-wide access).
    principal: Principal | None = None


@dataclass(frozen=True)
class NodeResult:
    output: Any
    tools: tuple[str, ...] = ()  # the tools the step called, for usage figures


class NodeExecutor(Protocol):
    async def run(self, step: Step, config: dict[str, Any], call: NodeCall) -> NodeResult: ...


class SecretReader(Protocol):
    async def get(self, tenant_id: uuid.UUID, name: str) -> str: ...


@dataclass(frozen=True)
class AgentBudget:
    max_steps: int
    max_tokens: int
    time_budget_s: float


# Builds the agent loop for one node run (None when no LLM is configured).
AgentLoopFactory = Callable[[ToolRegistry, AgentBudget], "AgentLoop"]


@dataclass(frozen=True)
class _PassageChunk:
    text: str
    document: str
    chunk_id: str
    page: int | None


@dataclass(frozen=True)
class _Passage:
    chunk: _PassageChunk


class NodeExecutors:
    """The leaf node types on the services of one deployment (built by the container). The
    services are factories, called only when a node of that type runs."""

    def __init__(
        self,
        *,
        query_service: Callable[[], QueryService],
        kbs: Callable[[], KbService],
        answer_generator: Callable[[], AnswerGenerator | None],
        tools: ToolRegistry,
        http_client: Callable[[], SafeHttpClient],
        secrets: Callable[[], SecretReader],
        agent_loop: AgentLoopFactory | None,
        agent_budget: AgentBudget,
    ) -> None:
        self._query_service = query_service
        self._kbs = kbs
        self._answer_generator = answer_generator
        self._tools = tools
        self._http_client = http_client
        self._secrets = secrets
        self._agent_loop = agent_loop
        self._agent_budget = agent_budget

    @property
    def tool_names(self) -> frozenset[str]:
        return frozenset(self._tools.names())

    async def run(self, step: Step, config: dict[str, Any], call: NodeCall) -> NodeResult:
        if isinstance(step, RetrieveNode):
            return await self._retrieve(step, config, call)
        if isinstance(step, GenerateNode):
            return await self._generate(step, config)
        if isinstance(step, HttpConfig):  # http nodes and http compensations
            return await self._http(step, config, call)
        if isinstance(step, TransformNode):
            if step.jmespath is not None:
                return NodeResult(search(step.jmespath, call.context))
            return NodeResult(render(step.template or "", call.context))
        if isinstance(step, ToolConfig):  # tool nodes and tool compensations
            return NodeResult(await self._tools.call(step.tool, config["input"]), (step.tool,))
        if isinstance(step, AgentNode):
            return await self._agent(step, config, call)
        raise TypeError(f"no executor for {type(step).__name__}")

    async def _retrieve(
        self, node: RetrieveNode, config: dict[str, Any], call: NodeCall
    ) -> NodeResult:
        top_k = config["top_k"]
        if top_k is not None:
            try:
                top_k = int(top_k)
            except (TypeError, ValueError):
                raise InvalidInput(
                    f"top_k must be a whole number, not {top_k!r}", code="invalid_node_config"
                ) from None
            if not 1 <= top_k <= 100:
                raise InvalidInput("top_k must be between 1 and 100", code="invalid_node_config")
        filters = config["filters"]
        if not isinstance(filters, dict):
            raise InvalidInput("filters must be an object", code="invalid_node_config")
        request = QueryRequest(
            query=str(config["query"]),
            mode=node.mode,
            top_k=top_k,
            filters=filters,
            answer=node.answer,
        )
        result = await self._query_service().query(
            call.tenant_id, str(config["kb"]), request, principal=call.principal
        )
        return NodeResult(result)

    async def _readable_kb(self, call: NodeCall, kb: str) -> str:
        """The KB's id, once the run's principal may read it (``kb_not_found`` otherwise)."""
        if call.principal is None:
            return kb
        record = await self._kbs().get_for(call.principal, kb, Permission.KB_READ)
        return str(record.id)

    async def _generate(self, node: GenerateNode, config: dict[str, Any]) -> NodeResult:
        question = str(config["question"])
        passages = _passages(config["passages"])
        generator = self._answer_generator()
        if generator is None:
            if node.require_llm:
                raise InvalidInput(
                    "this generate node requires an LLM and none is configured",
                    code="llm_not_configured",
                )
            answer = extractive_answer(question, passages)
        else:
            answer = await asyncio.to_thread(generated_answer, generator, question, passages)
        return NodeResult(
            {
                "text": answer.text,
                "citations": [asdict(citation) for citation in answer.citations],
                "generated": generator is not None,
            }
        )

    async def _http(
        self, step: HttpNode | HttpCompensation, config: dict[str, Any], call: NodeCall
    ) -> NodeResult:
        headers = await self._headers(config["headers"], call)
        body = config["body"]
        response = await self._http_client().request(
            step.method,
            str(config["url"]),
            headers=headers,
            json=config["json"],
            content=None if body is None else str(body),
        )
        ok = (
            response.status in step.expect_status
            if step.expect_status
            else 200 <= response.status < 300
        )
        if not ok:
            message = f"{step.method} {response.url} answered {response.status}"
            details = {"status": response.status}
            if response.status >= 500 or response.status == 429:
                raise DependencyUnavailable(message, code="http_unavailable", details=details)
            raise InvalidInput(message, code="http_error", details=details)
        content_type = response.headers.get("content-type", "")
        payload = response.json() if "json" in content_type else response.text()
        return NodeResult({"status": response.status, "headers": response.headers, "body": payload})

    async def _headers(self, headers: Mapping[str, Any], call: NodeCall) -> dict[str, str]:
        """Header values with the tenant's secrets filled in, for this request only."""
        resolved: dict[str, str] = {}
        for name, value in headers.items():
            text = str(value)
            if is_template(text):
                names = template_usage(text).secrets
                secrets = {n: await self._secrets().get(call.tenant_id, n) for n in names}
                text = str(render(text, {**call.context, "secrets": secrets}))
            resolved[name] = text
        return resolved

    async def _agent(self, node: AgentNode, config: dict[str, Any], call: NodeCall) -> NodeResult:
        if self._agent_loop is None:
            raise InvalidInput(
                "agent nodes need an LLM and none is configured", code="llm_not_configured"
            )
        registry = ToolRegistry([self._tools.get(name) for name in node.tools])
        if config["kb"]:
            kb = await self._readable_kb(call, str(config["kb"]))
            registry.register(self._kb_search(call.tenant_id, kb))
        limits = self._agent_budget
        budget = AgentBudget(
            max_steps=node.max_steps or limits.max_steps,
            max_tokens=node.max_tokens or limits.max_tokens,
            time_budget_s=node.time_budget_s or limits.time_budget_s,
        )
        result = await self._agent_loop(registry, budget).run(
            str(config["prompt"]), system=config["system"]
        )
        return NodeResult(
            {
                "answer": result.answer,
                "steps": result.steps,
                "tool_calls": [asdict(record) for record in result.tool_calls],
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "stop_reason": result.stop_reason,
            },
            tuple(record.name for record in result.tool_calls),
        )

    def _kb_search(self, tenant_id: uuid.UUID, kb: str) -> Tool:
        async def call(arguments: dict[str, Any]) -> dict[str, Any]:
            request = QueryRequest(query=arguments["query"], top_k=KB_SEARCH_HITS, answer=False)
            result = await self._query_service().query(tenant_id, kb, request)
            return {
                "hits": [
                    {"document": h["document"], "page": h["page"], "text": h["text"]}
                    for h in result["hits"]
                ]
            }

        return Tool(
            name=KB_SEARCH_TOOL,
            description=f"Search the knowledge base {kb!r}; returns the best passages.",
            input_schema={
                "type": "object",
                "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 2000}},
                "required": ["query"],
                "additionalProperties": False,
            },
            call=call,
        )


def _passages(value: Any) -> list[_Passage]:
    """Passages from a retrieve node's hits (objects with ``text``) or from plain strings."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("passages must be a list", code="invalid_node_config")
    passages = []
    for item in value:
        if isinstance(item, str):
            passages.append(_Passage(_PassageChunk(item, "", "", None)))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            page = item.get("page")
            passages.append(
                _Passage(
                    _PassageChunk(
                        item["text"],
                        str(item.get("document") or ""),
                        str(item.get("chunk_id") or ""),
                        page if isinstance(page, int) else None,
                    )
                )
            )
        else:
            raise InvalidInput(
                "each passage is a string or an object with text", code="invalid_node_config"
            )
    return passages
