"""A bounded tool-using agent on the Amazon Bedrock Converse API.

The model is offered the registry's tools. While it stops with ``tool_use`` the loop runs the
tools it asked for (concurrently) and sends their results back; a tool that fails is reported
to the model as a ``toolResult`` with ``status: error`` so it can recover. The run is bounded by
model calls (``max_steps``), input + output tokens summed over the run (``max_tokens``; each
call's output is also capped by what is left) and wall time (``time_budget_s``). A run that hits
a bound raises ``AgentBudgetExceeded`` naming the budget, never a half answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.adapters.bedrock_converse import converse, message_text
from shared.errors import DependencyUnavailable, QuarryError
from shared.workflows.tools import ToolRegistry

log = logging.getLogger(__name__)

# Output tokens one model call may produce at most; Claude 3 models on Bedrock allow 4096.
MAX_OUTPUT_TOKENS_PER_CALL = 4096
FINAL_STOP_REASONS = frozenset(
    {"end_turn", "stop_sequence", "guardrail_intervened", "content_filtered"}
)
TOKEN_LIMIT_STOP_REASONS = frozenset({"max_tokens", "model_context_window_exceeded"})


class AgentBudgetExceeded(QuarryError):
    """An agent run hit one of its bounds; ``details["budget"]`` is steps, tokens or time."""

    status_code = 422
    code = "agent_budget_exceeded"


@dataclass(frozen=True)
class ToolCallRecord:
    name: str
    input: Any
    duration_ms: float
    output: Any = None
    error: str | None = None


@dataclass(frozen=True)
class AgentResult:
    answer: str
    steps: int
    tool_calls: list[ToolCallRecord]
    input_tokens: int
    output_tokens: int
    stop_reason: str


class AgentLoop:
    def __init__(
        self,
        client: Any,
        *,
        model_id: str,
        tools: ToolRegistry,
        max_steps: int,
        max_tokens: int,
        time_budget_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_output_tokens: int = MAX_OUTPUT_TOKENS_PER_CALL,
    ) -> None:
        """``client`` is a boto3 ``bedrock-runtime`` client (called in a worker thread)."""
        self._client = client
        self._model_id = model_id
        self._tools = tools
        self._max_steps = max_steps
        self._max_tokens = max_tokens
        self._time_budget_s = time_budget_s
        self._clock = clock
        self._max_output_tokens = max_output_tokens

    async def run(self, prompt: str, *, system: str | None = None) -> AgentResult:
        try:
            async with asyncio.timeout(self._time_budget_s):
                return await self._run(prompt, system, self._clock() + self._time_budget_s)
        except TimeoutError as exc:
            raise self._exceeded("time", self._time_budget_s) from exc

    async def _run(self, prompt: str, system: str | None, deadline: float) -> AgentResult:
        messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": prompt}]}]
        tool_calls: list[ToolCallRecord] = []
        input_tokens = output_tokens = 0
        for step in range(1, self._max_steps + 1):
            if self._clock() >= deadline:
                raise self._exceeded("time", self._time_budget_s)
            tokens_left = self._max_tokens - input_tokens - output_tokens
            if tokens_left <= 0:
                raise self._exceeded("tokens", self._max_tokens, input_tokens + output_tokens)
            response = await asyncio.to_thread(
                converse, self._client, **self._request(messages, system, tokens_left)
            )
            usage = response.get("usage", {})
            input_tokens += usage.get("inputTokens", 0)
            output_tokens += usage.get("outputTokens", 0)
            if input_tokens + output_tokens > self._max_tokens:
                raise self._exceeded("tokens", self._max_tokens, input_tokens + output_tokens)
            message = response["output"]["message"]
            stop_reason = response["stopReason"]
            tool_uses = [block["toolUse"] for block in message["content"] if "toolUse" in block]
            if stop_reason in FINAL_STOP_REASONS:
                return AgentResult(
                    answer=message_text(message),
                    steps=step,
                    tool_calls=tool_calls,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    stop_reason=stop_reason,
                )
            if stop_reason in TOKEN_LIMIT_STOP_REASONS:
                raise self._exceeded(
                    "tokens", self._max_tokens, input_tokens + output_tokens, stop_reason
                )
            if stop_reason != "tool_use" or not tool_uses:
                raise DependencyUnavailable(
                    f"The model stopped with {stop_reason!r}",
                    code="llm_invalid_output",
                    details={"stop_reason": stop_reason},
                )
            if step == self._max_steps:
                break
            outcomes = await asyncio.gather(*(self._call_tool(use) for use in tool_uses))
            tool_calls.extend(record for record, _ in outcomes)
            messages.append(message)
            messages.append({"role": "user", "content": [result for _, result in outcomes]})
        raise self._exceeded("steps", self._max_steps, self._max_steps)

    def _request(
        self, messages: list[dict[str, Any]], system: str | None, tokens_left: int
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "modelId": self._model_id,
            "messages": list(messages),
            "inferenceConfig": {
                "maxTokens": min(self._max_output_tokens, tokens_left),
                "temperature": 0.0,
            },
        }
        if system:
            request["system"] = [{"text": system}]
        specs = self._tools.specs()
        if specs:
            request["toolConfig"] = {"tools": specs}
        return request

    async def _call_tool(self, use: dict[str, Any]) -> tuple[ToolCallRecord, dict[str, Any]]:
        """Run one requested tool; its result, or its failure, as a ``toolResult`` block."""
        name, arguments = use["name"], use["input"]
        started = self._clock()
        try:
            output = _json_value(await self._tools.call(name, arguments))
        except QuarryError as exc:
            error = exc.message
        except Exception as exc:  # a tool's own failure goes back to the model, as any other
            log.exception("workflow tool failed", extra={"tool": name})
            error = f"The tool failed ({type(exc).__name__})"
        else:
            record = ToolCallRecord(name, arguments, self._elapsed_ms(started), output=output)
            content = output if isinstance(output, dict) else {"result": output}
            return record, _tool_result(use["toolUseId"], {"json": content}, "success")
        record = ToolCallRecord(name, arguments, self._elapsed_ms(started), error=error)
        return record, _tool_result(use["toolUseId"], {"text": error}, "error")

    def _elapsed_ms(self, started: float) -> float:
        return (self._clock() - started) * 1000

    def _exceeded(
        self, budget: str, limit: float, used: float | None = None, stop_reason: str | None = None
    ) -> AgentBudgetExceeded:
        details: dict[str, Any] = {"budget": budget, "limit": limit}
        if used is not None:
            details["used"] = used
        if stop_reason is not None:
            details["stop_reason"] = stop_reason
        return AgentBudgetExceeded(
            f"The agent run exceeded its {budget} budget ({limit:g})", details=details
        )


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON data (what a Converse document and a run record hold)."""
    return json.loads(json.dumps(value, default=str))


def _tool_result(tool_use_id: str, content: dict[str, Any], status: str) -> dict[str, Any]:
    return {"toolResult": {"toolUseId": tool_use_id, "content": [content], "status": status}}
