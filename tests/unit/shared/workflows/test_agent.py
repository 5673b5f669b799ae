"""The bounded agent loop against a stubbed Bedrock Converse API (botocore Stubber)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from shared.errors import DependencyUnavailable
from shared.workflows.agent import AgentBudgetExceeded, AgentLoop, ToolCallRecord
from shared.workflows.tools import Tool, ToolRegistry

pytestmark = pytest.mark.unit

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ADD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> ToolRegistry:
    async def add(arguments: dict[str, Any]) -> int:
        clock.now += 0.25
        return int(arguments["a"] + arguments["b"])

    async def broken(arguments: dict[str, Any]) -> None:
        raise RuntimeError("database password is hunter2")

    async def slow(arguments: dict[str, Any]) -> str:
        clock.now += 120
        return "done"

    empty = {"type": "object", "properties": {}}
    return ToolRegistry(
        [
            Tool("add", "Add two integers.", ADD_SCHEMA, add),
            Tool("broken", "Always fails.", empty, broken),
            Tool("slow", "Takes two minutes.", empty, slow),
        ]
    )


@pytest.fixture
def bedrock(aws_credentials: None) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def agent(
    bedrock: tuple[Any, Stubber],
    registry: ToolRegistry,
    clock: FakeClock,
    **limits: Any,
) -> AgentLoop:
    values = {"max_steps": 4, "max_tokens": 10_000, "time_budget_s": 60.0, **limits}
    return AgentLoop(bedrock[0], model_id=MODEL, tools=registry, clock=clock, **values)


def reply(
    content: list[dict[str, Any]], stop_reason: str, tokens: tuple[int, int] = (100, 20)
) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": tokens[0],
            "outputTokens": tokens[1],
            "totalTokens": sum(tokens),
        },
        "metrics": {"latencyMs": 12},
    }


def tool_use(tool_use_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"toolUse": {"toolUseId": tool_use_id, "name": name, "input": arguments}}


async def test_two_step_tool_conversation(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    asking = [{"text": "Let me add them."}, tool_use("t1", "add", {"a": 2, "b": 3})]
    first_messages = [{"role": "user", "content": [{"text": "What is 2 + 3?"}]}]
    common = {
        "modelId": MODEL,
        "system": [{"text": "Use tools for arithmetic."}],
        "toolConfig": {"tools": registry.specs()},
    }
    stubber.add_response(
        "converse",
        reply(asking, "tool_use", (120, 30)),
        {
            **common,
            "messages": first_messages,
            "inferenceConfig": {"maxTokens": 4096, "temperature": 0.0},
        },
    )
    stubber.add_response(
        "converse",
        reply([{"text": "2 + 3 = 5."}], "end_turn", (170, 10)),
        {
            **common,
            "messages": [
                *first_messages,
                {"role": "assistant", "content": asking},
                {
                    "role": "user",
                    "content": [
                        {
                            "toolResult": {
                                "toolUseId": "t1",
                                "content": [{"json": {"result": 5}}],
                                "status": "success",
                            }
                        }
                    ],
                },
            ],
            "inferenceConfig": {"maxTokens": 4096, "temperature": 0.0},
        },
    )
    result = await agent(bedrock, registry, clock).run(
        "What is 2 + 3?", system="Use tools for arithmetic."
    )
    assert result.answer == "2 + 3 = 5."
    assert result.steps == 2
    assert result.stop_reason == "end_turn"
    assert (result.input_tokens, result.output_tokens) == (290, 40)
    assert result.tool_calls == [ToolCallRecord("add", {"a": 2, "b": 3}, 250.0, output=5)]


async def test_tool_errors_are_fed_back_to_the_model(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    stubber.add_response(
        "converse",
        reply(
            [
                tool_use("t1", "subtract", {"a": 1}),
                tool_use("t2", "add", {"a": "two", "b": 3}),
                tool_use("t3", "broken", {}),
            ],
            "tool_use",
        ),
    )
    seen: list[dict[str, Any]] = []
    stubber.add_response("converse", reply([{"text": "I could not compute it."}], "end_turn"))
    client = bedrock[0]
    client.meta.events.register(
        "provide-client-params.bedrock-runtime.Converse",
        lambda params, **kwargs: seen.append(params),
    )
    result = await agent(bedrock, registry, clock).run("Compute something.")
    assert result.answer == "I could not compute it."
    assert [(call.name, call.output) for call in result.tool_calls] == [
        ("subtract", None),
        ("add", None),
        ("broken", None),
    ]
    errors = [call.error or "" for call in result.tool_calls]
    assert "No tool named 'subtract'" in errors[0]
    assert "Invalid input for tool add" in errors[1]
    assert errors[2] == "The tool failed (RuntimeError)"
    results = [block["toolResult"] for block in seen[1]["messages"][-1]["content"]]
    assert [(r["toolUseId"], r["status"]) for r in results] == [
        ("t1", "error"),
        ("t2", "error"),
        ("t3", "error"),
    ]
    assert results[2]["content"] == [{"text": "The tool failed (RuntimeError)"}]
    assert "hunter2" not in str(seen[1])


async def test_max_steps_exceeded(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    for n in range(2):
        stubber.add_response(
            "converse", reply([tool_use(f"t{n}", "add", {"a": n, "b": 1})], "tool_use")
        )
    with pytest.raises(AgentBudgetExceeded) as caught:
        await agent(bedrock, registry, clock, max_steps=2).run("Loop forever.")
    assert caught.value.code == "agent_budget_exceeded"
    assert caught.value.details == {"budget": "steps", "limit": 2, "used": 2}
    assert clock.now == 1000.25  # the tools of the last step did not run


async def test_token_budget_exceeded(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    stubber.add_response(
        "converse", reply([tool_use("t1", "add", {"a": 1, "b": 1})], "tool_use", (60, 30))
    )
    stubber.add_response(
        "converse",
        reply([{"text": "Two."}], "end_turn", (95, 5)),
        {
            "modelId": MODEL,
            "messages": ANY,
            "toolConfig": {"tools": registry.specs()},
            # Each call's output is capped by the tokens the run has left.
            "inferenceConfig": {"maxTokens": 10, "temperature": 0.0},
        },
    )
    with pytest.raises(AgentBudgetExceeded) as caught:
        await agent(bedrock, registry, clock, max_tokens=100).run("Add 1 and 1.")
    assert caught.value.details == {"budget": "tokens", "limit": 100, "used": 190}


async def test_an_answer_cut_at_the_token_limit_is_not_returned(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    stubber.add_response("converse", reply([{"text": "The answer is"}], "max_tokens", (40, 50)))
    with pytest.raises(AgentBudgetExceeded) as caught:
        await agent(bedrock, registry, clock, max_tokens=100).run("Explain everything.")
    assert caught.value.details["budget"] == "tokens"
    assert caught.value.details["stop_reason"] == "max_tokens"


async def test_time_budget_exceeded(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    stubber.add_response("converse", reply([tool_use("t1", "slow", {})], "tool_use"))
    with pytest.raises(AgentBudgetExceeded) as caught:
        await agent(bedrock, registry, clock, time_budget_s=60.0).run("Take your time.")
    assert caught.value.details == {"budget": "time", "limit": 60.0}


async def test_bedrock_client_error_is_llm_unavailable(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    stubber.add_client_error("converse", "ThrottlingException", "Too many requests", 429)
    with pytest.raises(DependencyUnavailable) as caught:
        await agent(bedrock, registry, clock).run("Hello?")
    assert caught.value.code == "llm_unavailable"
    assert "ThrottlingException" in caught.value.message


async def test_malformed_tool_use_is_not_an_answer(
    bedrock: tuple[Any, Stubber], registry: ToolRegistry, clock: FakeClock
) -> None:
    _, stubber = bedrock
    stubber.add_response("converse", reply([{"text": "{"}], "malformed_tool_use"))
    with pytest.raises(DependencyUnavailable) as caught:
        await agent(bedrock, registry, clock).run("Hello?")
    assert caught.value.code == "llm_invalid_output"


async def test_without_tools_no_tool_config_is_sent(
    bedrock: tuple[Any, Stubber], clock: FakeClock
) -> None:
    _, stubber = bedrock
    stubber.add_response(
        "converse",
        reply([{"text": " Hello! "}], "end_turn"),
        {
            "modelId": MODEL,
            "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
            "inferenceConfig": {"maxTokens": 4096, "temperature": 0.0},
        },
    )
    result = await agent(bedrock, ToolRegistry(), clock).run("Hi")
    assert (result.answer, result.steps, result.tool_calls) == ("Hello!", 1, [])
