"""Tools an agent may call: a name, a description, a JSON Schema for the input, and a coroutine.

``ToolRegistry`` validates every call's arguments against the tool's schema (``jsonschema``,
draft 2020-12) before the tool runs, and describes its tools in the Bedrock Converse
``toolConfig`` form. A tool that needs a service (KB retrieval, say) is a ``Tool`` whose ``call``
closes over it; ``default_tool_registry`` holds the built-ins that need nothing.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from shared.errors import InvalidInput, NotFound

# Bedrock (and the models behind it) accept tool names of this form only.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_REPORTED_INPUT_ERRORS = 10
MAX_TEXT_CHARS = 1_000_000
MAX_EXPRESSION_CHARS = 500
# The arithmetic evaluator refuses integers longer than this, so no expression exhausts memory.
MAX_INTEGER_BITS = 4096


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    call: Callable[[dict[str, Any]], Awaitable[Any]]


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, tuple[Tool, Draft202012Validator]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add ``tool``; a bad name, a bad schema or a name already taken is a ValueError."""
        if not TOOL_NAME.match(tool.name):
            raise ValueError(f"tool name {tool.name!r} must match {TOOL_NAME.pattern}")
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        if tool.input_schema.get("type") != "object":
            raise ValueError(f"tool {tool.name!r}: the input schema must be of type object")
        try:
            Draft202012Validator.check_schema(tool.input_schema)
        except SchemaError as exc:
            raise ValueError(f"tool {tool.name!r}: invalid input schema: {exc.message}") from exc
        self._tools[tool.name] = (tool, Draft202012Validator(tool.input_schema))

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name][0]
        except KeyError:
            raise NotFound(
                f"No tool named {name!r}",
                code="unknown_tool",
                details={"tool": name, "available": self.names()},
            ) from None

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self) -> list[dict[str, Any]]:
        """The tools as Bedrock Converse ``toolConfig.tools`` entries."""
        return [
            {
                "toolSpec": {
                    "name": tool.name,
                    "description": tool.description,
                    "inputSchema": {"json": tool.input_schema},
                }
            }
            for tool, _ in self._tools.values()
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run tool ``name`` on ``arguments`` once they satisfy its input schema."""
        tool = self.get(name)
        validator = self._tools[name][1]
        errors = sorted(validator.iter_errors(arguments), key=lambda error: list(error.path))
        if errors:
            raise InvalidInput(
                f"Invalid input for tool {name}: {errors[0].message}",
                code="invalid_tool_input",
                details={
                    "tool": name,
                    "errors": [
                        {
                            "path": "/".join(str(part) for part in error.path),
                            "message": error.message,
                        }
                        for error in errors[:MAX_REPORTED_INPUT_ERRORS]
                    ],
                },
            )
        return await tool.call(arguments)


def default_tool_registry(
    *, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
) -> ToolRegistry:
    """The built-in tools: text statistics, e-mail extraction, arithmetic and the time."""
    return ToolRegistry(
        [
            _text_tool(
                "text_word_count",
                "Count the words, sentences and characters of a text.",
                _word_count,
            ),
            _text_tool(
                "text_extract_emails",
                "List the distinct e-mail addresses that appear in a text, in order.",
                _extract_emails,
            ),
            Tool(
                name="math_evaluate",
                description="Evaluate an arithmetic expression: numbers, + - * / // % "
                "**, parentheses, the constants pi and e, and abs, round, min, max, sqrt, "
                "log, exp, floor, ceil. Example: (17.5 * 3) / 2 ** 2.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "expression": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_EXPRESSION_CHARS,
                        }
                    },
                    "required": ["expression"],
                    "additionalProperties": False,
                },
                call=_math_evaluate,
            ),
            Tool(
                name="datetime_now",
                description="The current date and time, in UTC or in an IANA time zone such "
                "as Europe/Zurich.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "timezone": {"type": "string", "default": "UTC", "maxLength": 64}
                    },
                    "additionalProperties": False,
                },
                call=_datetime_now(now),
            ),
        ]
    )


def _text_tool(name: str, description: str, compute: Callable[[str], dict[str, Any]]) -> Tool:
    async def call(arguments: dict[str, Any]) -> dict[str, Any]:
        return compute(arguments["text"])

    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": MAX_TEXT_CHARS}},
        "required": ["text"],
        "additionalProperties": False,
    }
    return Tool(name=name, description=description, input_schema=schema, call=call)


_WORD = re.compile(r"\w+(?:['\u2019-]\w+)*")  # "don't", "well-known": one word
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)


def _word_count(text: str) -> dict[str, Any]:
    words = len(_WORD.findall(text))
    sentences = len(_SENTENCE_END.findall(text.strip()))
    if words and not sentences:
        sentences = 1
    return {"words": words, "sentences": sentences, "characters": len(text)}


def _extract_emails(text: str) -> dict[str, Any]:
    seen: dict[str, None] = {}
    for match in _EMAIL.finditer(text):
        seen.setdefault(match.group(0).rstrip("."), None)
    return {"emails": list(seen)}


# The arithmetic evaluator walks the parsed expression itself (no eval): only these exist.
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


async def _math_evaluate(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"result": evaluate_arithmetic(arguments["expression"])}


def evaluate_arithmetic(expression: str) -> int | float:
    """The value of an arithmetic expression; anything else is ``invalid_expression``."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise _invalid_expression(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise _invalid_expression(f"not an arithmetic expression ({exc.msg})") from exc
    try:
        return _evaluate(tree.body)
    except ZeroDivisionError as exc:
        raise _invalid_expression("division by zero") from exc
    except (OverflowError, ValueError, TypeError, RecursionError) as exc:
        raise _invalid_expression(str(exc)) from exc


def _evaluate(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        arguments = [_evaluate(argument) for argument in node.args]
        return _checked(_FUNCTIONS[node.func.id](*arguments))
    raise _invalid_expression(f"{ast.unparse(node)!r} is not allowed")


def _check_power(base: int | float, exponent: int | float) -> None:
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent * base.bit_length() > MAX_INTEGER_BITS
        and abs(base) > 1
    ):
        raise _invalid_expression("the result is too large")


def _checked(value: object) -> int | float:
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise _invalid_expression("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid_expression("the result is not finite")
    if isinstance(value, int | float):
        return value
    raise _invalid_expression("the result is not a real number")


def _invalid_expression(reason: str) -> InvalidInput:
    return InvalidInput(f"Invalid expression: {reason}", code="invalid_expression")


def _datetime_now(
    now: Callable[[], dt.datetime],
) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    async def call(arguments: dict[str, Any]) -> dict[str, Any]:
        name = arguments.get("timezone", "UTC")
        try:
            zone: dt.tzinfo = dt.UTC if name.upper() == "UTC" else ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(
                f"Unknown time zone {name!r}", code="unknown_timezone", details={"timezone": name}
            ) from exc
        moment = now().astimezone(zone)
        return {
            "iso": moment.isoformat(timespec="seconds"),
            "date": moment.date().isoformat(),
            "weekday": moment.strftime("%A"),
            "timezone": name,
        }

    return call
