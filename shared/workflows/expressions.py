"""The expression syntax of workflow definitions: references, JMESPath and sandboxed Jinja.

A node's templated fields hold plain values in which strings are one of:

- a **reference** ``$.<JMESPath>``, evaluated on the run context, e.g.
  ``$.nodes.search.output.hits`` (the value keeps its JSON type);
- a **template**, a string containing ``{{ ... }}`` or ``{% ... %}``, rendered by a sandboxed
  Jinja environment. A string that is one ``{{ expression }}`` and nothing else evaluates to the
  expression's value with its type (``"{{ input.top_k }}"`` is a number); any other template
  renders to a string;
- anything else is a literal.

Dictionaries and lists are resolved item by item. The run context is
``{"input": {...}, "nodes": {"<id>": {"output": ..., "status": ...}}}``, plus ``item`` and
``index`` inside a map body. ``secrets`` (the tenant's provider secrets) exists only where a
definition may use it (HTTP headers), and only while the request is sent.

Every reference to a node must be static (``nodes.<id>`` or ``nodes['<id>']``): the engine and
the Step Functions compiler read a workflow's data flow from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jmespath.exceptions import JMESPathError

from shared.errors import InvalidInput

REFERENCE_PREFIX = "$."
ROOTS = frozenset({"input", "nodes", "item", "index", "secrets"})
# A template may build a string or list at most this long with ``*`` (a memory-bomb guard).
MAX_REPEAT_ITEMS = 100_000
MAX_EXPONENT = 64
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<body>.*?)\}\}\s*$", re.DOTALL)


class ExpressionError(InvalidInput):
    """An expression that does not parse, or that failed while it was evaluated on a run."""

    code = "expression_error"


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (no attribute tricks, no mutation of the context) that also
    refuses huge ``*`` repetitions and ``**`` exponents."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_REPEAT_ITEMS
                ):
                    raise SecurityError("a repetition in a template is too large")
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError("an exponent in a template is too large")
        return super().call_binop(context, operator, left, right)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False)


@dataclass
class Usage:
    """What a value's expressions read: the context roots, the nodes and the secrets."""

    roots: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)

    def merge(self, other: Usage) -> None:
        self.roots |= other.roots
        self.nodes |= other.nodes
        self.secrets |= other.secrets


def is_reference(value: str) -> bool:
    return value.startswith(REFERENCE_PREFIX)


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def strings(value: Any) -> Iterator[str]:
    """Every string in a plain value (dict values and list items, recursively)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def value_usage(value: Any) -> Usage:
    """What the references and templates in ``value`` read; raises ``ExpressionError`` for one
    that does not parse or that refers to a node dynamically."""
    usage = Usage()
    for text in strings(value):
        if is_reference(text):
            usage.merge(jmespath_usage(text[len(REFERENCE_PREFIX) :]))
        elif is_template(text):
            usage.merge(template_usage(text))
    return usage


def jmespath_usage(expression: str) -> Usage:
    try:
        parsed = jmespath.compile(expression).parsed
    except JMESPathError as exc:
        raise ExpressionError(f"invalid JMESPath {expression!r}: {exc}") from exc
    usage = Usage()
    _walk_jmespath(parsed, at_root=True, usage=usage, expression=expression)
    return usage


# JMESPath node types whose first child is evaluated on the current value and the others on
# what it produced (so only the first can name a root of the context).
_CHAINS = frozenset(
    {"subexpression", "index_expression", "projection", "value_projection", "filter_projection"}
)
_CHAINS_FIRST_ONLY = _CHAINS | {"pipe", "flatten"}


def _walk_jmespath(node: dict[str, Any], *, at_root: bool, usage: Usage, expression: str) -> None:
    kind = node.get("type")
    children: list[dict[str, Any]] = node.get("children", [])
    if kind == "field" and at_root:
        name = str(node["value"])
        if name in ("nodes", "secrets"):
            raise ExpressionError(
                f"{expression!r}: name a node as nodes.<id> (a static reference)",
                code="dynamic_reference",
            )
        usage.roots.add(name)
        return
    if kind in ("current", "identity") and at_root:
        raise ExpressionError(
            f"{expression!r}: '@' or '*' on the whole context is not allowed; name what you read",
            code="dynamic_reference",
        )
    if kind == "expref":
        return  # evaluated on list elements, never on the context
    if kind == "subexpression" and at_root and children and _field(children[0]) in ROOTS:
        root = str(children[0]["value"])
        usage.roots.add(root)
        if root in ("nodes", "secrets"):
            member = _field(children[1]) if len(children) > 1 else None
            if member is None:
                raise ExpressionError(
                    f"{expression!r}: name a {root[:-1]} as {root}.<name> (a static reference)",
                    code="dynamic_reference",
                )
            (usage.nodes if root == "nodes" else usage.secrets).add(member)
        for child in children[1:]:
            _walk_jmespath(child, at_root=False, usage=usage, expression=expression)
        return
    for position, child in enumerate(children):
        child_at_root = at_root and (kind not in _CHAINS_FIRST_ONLY or position == 0)
        _walk_jmespath(child, at_root=child_at_root, usage=usage, expression=expression)


def _field(node: dict[str, Any]) -> str | None:
    return str(node["value"]) if node.get("type") == "field" else None


def template_usage(template: str) -> Usage:
    try:
        ast = _ENV.parse(template)
    except TemplateError as exc:
        raise ExpressionError(f"invalid template {template!r}: {exc}") from exc
    usage = Usage()
    usage.roots = set(meta.find_undeclared_variables(ast))
    static = 0
    for root, names in (("nodes", usage.nodes), ("secrets", usage.secrets)):
        for getattr_node in ast.find_all(nodes.Getattr):
            if _is_name(getattr_node.node, root):
                names.add(getattr_node.attr)
                static += 1
        for getitem in ast.find_all(nodes.Getitem):
            if _is_name(getitem.node, root):
                if not (
                    isinstance(getitem.arg, nodes.Const) and isinstance(getitem.arg.value, str)
                ):
                    raise ExpressionError(
                        f"{template!r}: name a {root[:-1]} as {root}.<name> or "
                        f"{root}['<name>'] (a static reference)",
                        code="dynamic_reference",
                    )
                names.add(getitem.arg.value)
                static += 1
    loads = sum(1 for n in ast.find_all(nodes.Name) if n.name in ("nodes", "secrets"))
    if loads != static:
        raise ExpressionError(
            f"{template!r}: nodes and secrets can only be read by name (nodes.<id>)",
            code="dynamic_reference",
        )
    return usage


def _is_name(node: nodes.Node, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


# --- evaluation ---------------------------------------------------------------------------


def search(expression: str, context: Mapping[str, Any]) -> Any:
    """A JMESPath expression's value on the context."""
    try:
        return jmespath.search(expression, context)
    except JMESPathError as exc:
        raise ExpressionError(f"JMESPath {expression!r} failed: {exc}") from exc


def condition(expression: str, context: Mapping[str, Any]) -> bool:
    """JMESPath truthiness: false, null, empty strings, lists and objects are false."""
    value = search(expression, context)
    return value not in (False, None, "", [], {})


def render(template: str, context: Mapping[str, Any]) -> Any:
    """A template's value: the expression's own value for a lone ``{{ expression }}``,
    otherwise the rendered string."""
    try:
        whole = _WHOLE_EXPRESSION.match(template)
        if whole and "{{" not in whole.group("body") and "{%" not in template:
            value = _ENV.compile_expression(whole.group("body"), undefined_to_none=False)(**context)
            return None if isinstance(value, StrictUndefined) else value
        return _ENV.from_string(template).render(**context)
    except (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
        raise ExpressionError(f"template {template!r} failed: {exc}") from exc


def resolve(value: Any, context: Mapping[str, Any], *, keep_secret_templates: bool) -> Any:
    """``value`` with every reference and template evaluated on ``context``.

    With ``keep_secret_templates`` a string that reads ``secrets`` stays as written: it is
    rendered only where the secret is used (the HTTP request), never stored or logged."""
    if isinstance(value, str):
        if is_reference(value):
            return search(value[len(REFERENCE_PREFIX) :], context)
        if is_template(value):
            if keep_secret_templates and template_usage(value).secrets:
                return value
            return render(value, context)
        return value
    if isinstance(value, Mapping):
        return {
            k: resolve(v, context, keep_secret_templates=keep_secret_templates)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [resolve(v, context, keep_secret_templates=keep_secret_templates) for v in value]
    return value
