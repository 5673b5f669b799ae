"""The tool registry (schemas, Bedrock specs, validation) and the built-in tools."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from shared.errors import InvalidInput, NotFound
from shared.workflows.tools import (
    MAX_INTEGER_BITS,
    Tool,
    ToolRegistry,
    default_tool_registry,
    evaluate_arithmetic,
)

pytestmark = pytest.mark.unit

ADD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "minimum": 0}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


async def add(arguments: dict[str, Any]) -> int:
    return int(arguments["a"] + arguments["b"])


ADD = Tool(name="add", description="Add two integers.", input_schema=ADD_SCHEMA, call=add)


async def test_registered_tool_is_called_with_valid_arguments() -> None:
    registry = ToolRegistry([ADD])
    assert registry.get("add") is ADD
    assert registry.names() == ["add"]
    assert await registry.call("add", {"a": 2, "b": 3}) == 5


@pytest.mark.parametrize(
    ("arguments", "path"),
    [
        ({"a": 1}, ""),
        ({"a": "1", "b": 2}, "a"),
        ({"a": 1, "b": -1}, "b"),
        ({"a": 1, "b": 2, "c": 3}, ""),
    ],
)
async def test_invalid_arguments_are_refused_before_the_call(
    arguments: dict[str, Any], path: str
) -> None:
    called: list[dict[str, Any]] = []

    async def spy(arguments: dict[str, Any]) -> None:
        called.append(arguments)

    registry = ToolRegistry([Tool("add", "Add.", ADD_SCHEMA, spy)])
    with pytest.raises(InvalidInput) as caught:
        await registry.call("add", arguments)
    assert caught.value.code == "invalid_tool_input"
    assert caught.value.details["tool"] == "add"
    assert caught.value.details["errors"][0]["path"] == path
    assert called == []


async def test_unknown_tool_is_not_found() -> None:
    with pytest.raises(NotFound) as caught:
        await ToolRegistry([ADD]).call("subtract", {})
    assert caught.value.code == "unknown_tool"
    assert caught.value.details["available"] == ["add"]


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        (ADD, "already registered"),
        (Tool("text.count", "x", ADD_SCHEMA, add), "must match"),
        (Tool("x" * 65, "x", ADD_SCHEMA, add), "must match"),
        (Tool("arr", "x", {"type": "array"}, add), "type object"),
        (Tool("bad", "x", {"type": "object", "properties": {"a": {"type": 5}}}, add), "schema"),
    ],
)
def test_register_refuses_bad_tools(tool: Tool, message: str) -> None:
    registry = ToolRegistry([ADD])
    with pytest.raises(ValueError, match=message):
        registry.register(tool)


def test_specs_are_bedrock_tool_specs() -> None:
    assert ToolRegistry([ADD]).specs() == [
        {
            "toolSpec": {
                "name": "add",
                "description": "Add two integers.",
                "inputSchema": {"json": ADD_SCHEMA},
            }
        }
    ]


def test_default_registry_tools_have_valid_specs() -> None:
    registry = default_tool_registry()
    assert registry.names() == [
        "text_word_count",
        "text_extract_emails",
        "math_evaluate",
        "datetime_now",
    ]
    for spec in registry.specs():
        assert spec["toolSpec"]["description"]
        assert spec["toolSpec"]["inputSchema"]["json"]["type"] == "object"


async def test_word_count() -> None:
    result = await default_tool_registry().call(
        "text_word_count", {"text": "It's a well-known fact. Is it? Yes!\n"}
    )
    assert result == {"words": 7, "sentences": 3, "characters": 36}
    empty = await default_tool_registry().call("text_word_count", {"text": "  "})
    assert empty == {"words": 0, "sentences": 0, "characters": 2}


async def test_extract_emails() -> None:
    text = (
        "Write to Ada.Lovelace+notes@example.co.uk or ops@quarry.dev. "
        "Again: ops@quarry.dev; not: @nobody, a@b, x@y.z1"
    )
    result = await default_tool_registry().call("text_extract_emails", {"text": text})
    assert result == {"emails": ["Ada.Lovelace+notes@example.co.uk", "ops@quarry.dev"]}


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(17.5 * 3) / 2 ** 2", 13.125),
        ("-2 ** 2", -4),
        ("7 // 2 + 7 % 2", 4),
        ("sqrt(16) + abs(-3) + max(1, 5, 2) + min(4, 2)", 14.0),
        ("round(pi, 2)", 3.14),
        ("floor(e) + ceil(0.2)", 3),
        ("2 ** 100", 2**100),
        ("2 ** -1", 0.5),
    ],
)
def test_math_evaluate(expression: str, value: float) -> None:
    assert evaluate_arithmetic(expression) == value


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('id')",
        "open('/etc/passwd')",
        "(1).__class__",
        "x + 1",
        "'a' * 3",
        "[1, 2]",
        "1 if 2 else 3",
        "lambda: 1",
        "1 < 2",
        "True + 1",
        "1 / 0",
        "5 % 0",
        "9 ** 9 ** 9",
        f"2 ** {MAX_INTEGER_BITS + 1}",
        "(2 ** 4000) * (2 ** 4000)",
        "10.0 ** 400",
        "(-8) ** 0.5",
        "sqrt(-1)",
        "log(0)",
        "min()",
        "round(1.5, ndigits=1)",
        "1 +",
        "1" * 600,
        "(" * 300 + "1" + ")" * 300,
    ],
)
def test_math_evaluate_refuses(expression: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        evaluate_arithmetic(expression)
    assert caught.value.code == "invalid_expression"


async def test_math_evaluate_tool() -> None:
    registry = default_tool_registry()
    assert await registry.call("math_evaluate", {"expression": "2 * pi"}) == {"result": 2 * math.pi}
    with pytest.raises(InvalidInput) as caught:
        await registry.call("math_evaluate", {"expression": ""})
    assert caught.value.code == "invalid_tool_input"


async def test_datetime_now() -> None:
    moment = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)
    registry = default_tool_registry(now=lambda: moment)
    assert await registry.call("datetime_now", {}) == {
        "iso": "2026-03-29T00:30:00+00:00",
        "date": "2026-03-29",
        "weekday": "Sunday",
        "timezone": "UTC",
    }
    zurich = await registry.call("datetime_now", {"timezone": "Europe/Zurich"})
    assert zurich["iso"] == "2026-03-29T01:30:00+01:00"
    with pytest.raises(InvalidInput) as caught:
        await registry.call("datetime_now", {"timezone": "Mars/Olympus_Mons"})
    assert caught.value.code == "unknown_timezone"
    with pytest.raises(InvalidInput):
        await registry.call("datetime_now", {"timezone": "../../etc/passwd"})
