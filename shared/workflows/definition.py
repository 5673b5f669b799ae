"""Workflow definitions: the pydantic models of a user-defined AI workflow, parsed from JSON or
YAML and validated before anything runs.

A definition::

    name: support-answer            # letters, digits, '.', '_', '-'
    version: 1                      # set by the store: each update is a new version
    description: Answer a ticket from the handbook, with a human check
    input:                          # typed fields of the run input
      question: {type: string}
      top_k: {type: integer, required: false, default: 5}
    nodes:                          # a DAG
      - id: search
        type: retrieve
        kb: handbook
        query: "{{ input.question }}"
        top_k: "$.input.top_k"
      - id: answer
        type: generate
        question: "{{ input.question }}"
        passages: "$.nodes.search.output.hits"
        retry: {attempts: 3, backoff_s: 1, retry_on: [dependency_unavailable]}
        timeout_s: 20
    output:
      answer: "$.nodes.answer.output.text"

**Data flow.** Node fields hold plain values whose strings may be references (``$.<JMESPath>``)
or sandboxed Jinja templates; see ``shared.workflows.expressions`` for the syntax and the run
context. A node depends on every node it references and on those in ``depends_on``; node ids are
unique in the whole definition, and a node runs once all its dependencies finished. Nodes that do
not depend on each other run concurrently. A definition with a cycle is refused.

**Nested node lists** (scopes): ``branch`` has ``then`` and ``else``, ``parallel`` has
``branches`` (a list of node lists), ``map`` has ``nodes`` (its body, run once per item). A
nested node may read nodes of its own list and of any enclosing list; such an outer reference
makes the enclosing container node wait for that node. A node outside a container may read the
nodes inside a ``branch`` or ``parallel`` (after the container finished; a node of the branch not
taken has status ``skipped`` and output ``null``), never those inside a ``map`` body (they run
once per item: read the map's output). A node cannot read its own container, nor a node of a
sibling list of the same container. ``item`` and ``index`` exist inside a map body only.

**Node types** (leaf nodes may have ``retry``, ``timeout_s`` and ``compensation``):

- ``retrieve``: a knowledge-base query (``kb``, ``query``, ``mode``, ``top_k``, ``filters``,
  ``answer``); output: the query result (``hits``, ``answer``, ``citations``, ...).
- ``generate``: an answer to ``question`` from ``passages`` (a retrieve node's hits or a list of
  strings), written by the configured LLM, else extractive; ``require_llm: true`` refuses the
  extractive fallback (and then the definition needs an LLM). Output: ``text``, ``citations``,
  ``generated``.
- ``http``: an outbound request (``method``, ``url``, ``headers``, ``json`` or ``body``,
  ``expect_status``) through the SSRF-safe client. Headers may read the tenant's provider secrets
  as ``{{ secrets.<name> }}``; nothing else may. Output: ``status``, ``headers``, ``body``.
- ``transform``: one ``jmespath`` expression on the run context, or one Jinja ``template``.
- ``tool``: a registered Python tool (``tool``, ``input``); output: the tool's result.
- ``agent``: an LLM that may call the registered ``tools`` (and the KB ``kb``) in a bounded loop
  (``max_steps``, ``max_tokens``, ``time_budget_s``, bounded by the settings). A definition with
  an agent is refused when no LLM is configured.
- ``approval``: a human decision; the run pauses (``waiting_approval``) until approved or
  rejected, or until ``timeout_s`` (default: the settings') passes, which rejects it.
  Output: ``approved``, ``decided_by``, ``comment``.
- ``branch``: ``condition`` is a JMESPath expression on the run context (JMESPath truthiness);
  true runs ``then``, false runs ``else``. Output: ``{"taken": "then" | "else"}``. The
  representation is chosen to compile to Step Functions as one task that evaluates the condition
  into ``$.nodes.<id>.output``, then a Choice state (``BooleanEquals`` on the result) into two
  state chains that join again in one Pass state: no JMESPath has to become a Choice rule.
- ``parallel``: runs its ``branches`` concurrently (a Parallel state). Output: a list with, per
  branch, the output of the branch's last node.
- ``map``: runs ``nodes`` once per element of ``items`` (a reference to a list), at most
  ``max_concurrency`` at a time (a Map state). Output: a list with, per item, the output of the
  body's last node.

**Retry** (``retry``): ``attempts`` in all, waiting ``backoff_s * 2**n`` (at most
``max_backoff_s``) between them; ``retry_on`` lists the error codes worth a retry (empty: every
error that is not the caller's, i.e. timeouts, unavailable dependencies and unexpected errors).
**Timeout** (``timeout_s``): of one attempt (default: the settings'). **Compensation**: an
``http`` or ``tool`` node spec (no id) run when a later node fails, in reverse completion order;
it may read the compensated node's output (``nodes.<id>.output``).

Public API (the engine and the Step Functions compiler build on it): ``parse_definition``,
``load_definition``, ``ValidationRules``, ``WorkflowDefinition`` (``.graph``), ``WorkflowGraph``
(``dependencies``, ``order``, ``scope_of``, ``node``), the node models and the ``Node``,
``LeafNode`` and ``Compensation`` unions. Invalid definitions raise
``InvalidInput(code="invalid_workflow", details={"errors": [...]})``, each error a dict with
``code``, ``message`` and, where it applies, ``node`` and ``loc``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import InvalidInput, PayloadTooLarge
from shared.workflows.expressions import (
    ExpressionError,
    Usage,
    jmespath_usage,
    template_usage,
    value_usage,
)

if TYPE_CHECKING:
    from shared.settings import Settings

NODE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
INVALID_WORKFLOW = "invalid_workflow"
INVALID_WORKFLOW_INPUT = "invalid_workflow_input"

# A scope is the path of nested node lists a node sits in: (container id, slot) pairs, where the
# slot is "then", "else", "branches[<i>]" or "nodes" (a map body). The top level is ().
Scope = tuple[tuple[str, str], ...]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryPolicy(_Model):
    attempts: int = Field(default=1, ge=1, le=10, description="Attempts in all.")
    backoff_s: float = Field(default=0.0, ge=0, le=300, description="Wait before attempt 2.")
    max_backoff_s: float = Field(default=60.0, ge=0, le=3600, description="Longest wait.")
    retry_on: list[str] = Field(
        default_factory=list,
        description="Error codes worth a retry; empty: every error that is not the caller's.",
    )

    def delay_s(self, failed_attempt: int) -> float:
        """The wait after attempt ``failed_attempt`` (1-based) failed."""
        return float(min(self.backoff_s * 2 ** (failed_attempt - 1), self.max_backoff_s))

    def retries(self, code: str, *, callers_fault: bool) -> bool:
        """Whether an error with ``code`` is worth another attempt (if attempts are left)."""
        if self.retry_on:
            return code in self.retry_on
        return not callers_fault


InputType = Literal["string", "number", "integer", "boolean", "object", "array", "any"]


class InputField(_Model):
    type: InputType = "string"
    description: str = ""
    required: bool = True
    default: Any = None
    enum: list[Any] | None = None

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit this field, or None."""
        if not _TYPE_CHECKS[self.type](value):
            return f"must be of type {self.type}"
        if self.enum is not None and value not in self.enum:
            return f"must be one of {self.enum}"
        return None


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "any": lambda v: True,
}


# --- node type configurations (shared by nodes and compensations) -------------------------


class _Templated(_Model):
    # Fields that hold references and templates, resolved on the run context before the node runs.
    TEMPLATED: ClassVar[tuple[str, ...]] = ()

    def templated(self) -> dict[str, Any]:
        """The templated fields' values, under their names in a definition (``json``)."""
        fields = type(self).model_fields
        return {(fields[name].alias or name): getattr(self, name) for name in self.TEMPLATED}

    def field_usage(self) -> Iterator[tuple[str, Usage]]:
        """What each field reads from the run context (raises ``ExpressionError``)."""
        for name in self.TEMPLATED:
            yield name, value_usage(getattr(self, name))


class _Step(_Templated):
    """What a leaf node and a compensation have in common."""

    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = Field(default=None, gt=0, le=24 * 3600)


class HttpConfig(_Templated):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    url: str = Field(min_length=1, max_length=4096)
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    expect_status: list[int] = Field(
        default_factory=list, description="Statuses that succeed; empty: any 2xx."
    )

    TEMPLATED: ClassVar[tuple[str, ...]] = ("url", "headers", "json_body", "body")

    @model_validator(mode="after")
    def _one_body(self) -> HttpConfig:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give json or body, not both")
        return self


class ToolConfig(_Templated):
    tool: str = Field(min_length=1, max_length=100)
    input: dict[str, Any] = Field(default_factory=dict)

    TEMPLATED: ClassVar[tuple[str, ...]] = ("input",)


class HttpCompensation(_Step, HttpConfig):
    type: Literal["http"]


class ToolCompensation(_Step, ToolConfig):
    type: Literal["tool"]


Compensation = Annotated[HttpCompensation | ToolCompensation, Field(discriminator="type")]


# --- nodes ---------------------------------------------------------------------------------


class NodeBase(_Templated):
    id: str = Field(min_length=1, max_length=64)
    description: str = ""
    depends_on: list[str] = Field(default_factory=list)

    def scopes(self) -> list[tuple[str, list[Node]]]:
        """The nested node lists, by slot name (containers only)."""
        return []


class _LeafNode(NodeBase, _Step):
    compensation: Compensation | None = None


class RetrieveNode(_LeafNode):
    type: Literal["retrieve"]
    kb: str = Field(min_length=1)
    query: str = Field(min_length=1)
    mode: Literal["auto", "fast", "balanced", "deep"] = "auto"
    top_k: int | str | None = None
    filters: dict[str, Any] = Field(default_factory=dict)
    answer: bool = False

    TEMPLATED: ClassVar[tuple[str, ...]] = ("kb", "query", "top_k", "filters")


class GenerateNode(_LeafNode):
    type: Literal["generate"]
    question: str = Field(min_length=1)
    passages: str | list[Any] = Field(default_factory=list)
    require_llm: bool = False

    TEMPLATED: ClassVar[tuple[str, ...]] = ("question", "passages")


class HttpNode(_LeafNode, HttpConfig):
    type: Literal["http"]


class TransformNode(_LeafNode):
    type: Literal["transform"]
    jmespath: str | None = None
    template: str | None = None

    @model_validator(mode="after")
    def _one_expression(self) -> TransformNode:
        if (self.jmespath is None) == (self.template is None):
            raise ValueError("a transform has exactly one of jmespath or template")
        return self

    def field_usage(self) -> Iterator[tuple[str, Usage]]:
        if self.jmespath is not None:
            yield "jmespath", jmespath_usage(self.jmespath)
        if self.template is not None:
            yield "template", template_usage(self.template)


class ToolNode(_LeafNode, ToolConfig):
    type: Literal["tool"]


class AgentNode(_LeafNode):
    type: Literal["agent"]
    prompt: str = Field(min_length=1)
    system: str | None = None
    tools: list[str] = Field(default_factory=list)
    kb: str | None = Field(default=None, description="A KB the agent may search.")
    max_steps: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    time_budget_s: float | None = Field(default=None, gt=0)

    TEMPLATED: ClassVar[tuple[str, ...]] = ("prompt", "system", "kb")


class ApprovalNode(NodeBase):
    """``timeout_s``: how long the decision may take (then the approval is rejected)."""

    type: Literal["approval"]
    message: str = ""
    timeout_s: float | None = Field(default=None, gt=0)

    TEMPLATED: ClassVar[tuple[str, ...]] = ("message",)


class BranchNode(NodeBase):
    type: Literal["branch"]
    condition: str = Field(min_length=1, description="JMESPath on the run context.")
    then: list[Node] = Field(default_factory=list)
    else_: list[Node] = Field(default_factory=list, alias="else")

    def scopes(self) -> list[tuple[str, list[Node]]]:
        return [("then", self.then), ("else", self.else_)]

    def field_usage(self) -> Iterator[tuple[str, Usage]]:
        yield "condition", jmespath_usage(self.condition)


class ParallelNode(NodeBase):
    type: Literal["parallel"]
    branches: list[list[Node]] = Field(min_length=1)

    @field_validator("branches")
    @classmethod
    def _no_empty_branch(cls, branches: list[list[Node]]) -> list[list[Node]]:
        if any(not branch for branch in branches):
            raise ValueError("every branch has at least one node")
        return branches

    def scopes(self) -> list[tuple[str, list[Node]]]:
        return [(f"branches[{i}]", branch) for i, branch in enumerate(self.branches)]


class MapNode(NodeBase):
    type: Literal["map"]
    items: str = Field(min_length=1, description="A reference to a list.")
    nodes: list[Node] = Field(min_length=1)
    max_concurrency: int = Field(default=4, ge=1)

    TEMPLATED: ClassVar[tuple[str, ...]] = ("items",)

    def scopes(self) -> list[tuple[str, list[Node]]]:
        return [("nodes", self.nodes)]


LeafNode = RetrieveNode | GenerateNode | HttpNode | TransformNode | ToolNode | AgentNode
Node = Annotated[
    RetrieveNode
    | GenerateNode
    | HttpNode
    | TransformNode
    | ToolNode
    | AgentNode
    | ApprovalNode
    | BranchNode
    | ParallelNode
    | MapNode,
    Field(discriminator="type"),
]
LEAF_TYPES: tuple[type[_LeafNode], ...] = (
    RetrieveNode,
    GenerateNode,
    HttpNode,
    TransformNode,
    ToolNode,
    AgentNode,
)


class WorkflowDefinition(_Model):
    name: str
    version: int = Field(default=1, ge=1)
    description: str = ""
    input: dict[str, InputField] = Field(default_factory=dict)
    nodes: list[Node] = Field(min_length=1)
    output: dict[str, Any] | None = Field(
        default=None,
        description="The run output, with references; default: the last node's output.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not WORKFLOW_NAME.match(name):
            raise ValueError(
                "a workflow name is 1-100 letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        return name

    @cached_property
    def graph(self) -> WorkflowGraph:
        """The analysed DAG; raises ``InvalidInput`` for a definition that is not one."""
        graph, problems = _analyse(self)
        if problems:
            raise _invalid(problems)
        return graph

    def to_document(self) -> dict[str, Any]:
        """The JSON form stored and returned (defaults left out, aliases used)."""
        document: dict[str, Any] = self.model_dump(
            mode="json", by_alias=True, exclude_defaults=True
        )
        document["version"] = self.version
        return document

    def validate_input(self, data: Any) -> dict[str, Any]:
        """The run input checked against ``input``: defaults filled in, unknown fields refused."""
        if not isinstance(data, dict):
            raise InvalidInput("the run input is a JSON object", code=INVALID_WORKFLOW_INPUT)
        errors = [
            {"field": name, "message": "is not a field of this workflow's input"}
            for name in data
            if name not in self.input
        ]
        result: dict[str, Any] = {}
        for name, spec in self.input.items():
            if name not in data:
                if spec.default is not None:
                    result[name] = spec.default
                elif spec.required:
                    errors.append({"field": name, "message": "is required"})
                else:
                    result[name] = None
                continue
            problem = spec.problem(data[name])
            if problem:
                errors.append({"field": name, "message": problem})
            result[name] = data[name]
        if errors:
            first = errors[0]
            raise InvalidInput(
                f"invalid run input: {first['field']} {first['message']}",
                code=INVALID_WORKFLOW_INPUT,
                details={"errors": errors},
            )
        return result


for _model in (BranchNode, ParallelNode, MapNode, WorkflowDefinition):
    _model.model_rebuild()


# --- the graph -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedNode:
    node: Node
    scope: Scope


class WorkflowGraph:
    """A definition's nodes with their scopes and dependencies (see the module docstring)."""

    def __init__(
        self,
        definition: WorkflowDefinition,
        placed: dict[str, PlacedNode],
        dependencies: dict[str, frozenset[str]],
    ) -> None:
        self.definition = definition
        self._placed = placed
        self._dependencies = dependencies

    def node(self, node_id: str) -> Node:
        return self._placed[node_id].node

    def scope_of(self, node_id: str) -> Scope:
        return self._placed[node_id].scope

    def node_ids(self) -> list[str]:
        """Every node id, nested ones included, in definition order."""
        return list(self._placed)

    def dependencies(self, node_id: str) -> frozenset[str]:
        """The nodes of the same list that ``node_id`` waits for (references into or out of
        nested lists are lifted to the containers in this list)."""
        return self._dependencies[node_id]

    def order(self, nodes: Sequence[Node]) -> list[Node]:
        """A topological order of one node list (its own order breaks ties)."""
        done: set[str] = set()
        ordered: list[Node] = []
        pending = list(nodes)
        while pending:
            ready = next(n for n in pending if self._dependencies[n.id] <= done)
            pending.remove(ready)
            ordered.append(ready)
            done.add(ready.id)
        return ordered


@dataclass(frozen=True)
class ValidationRules:
    """What a definition must respect beyond its own consistency: limits and what this
    deployment offers (an LLM, registered tools)."""

    max_nodes: int = 100
    max_map_concurrency: int = 16
    llm_configured: bool = False
    tool_names: frozenset[str] | None = None  # None: tool names are not checked
    agent_max_steps: int = 8
    agent_max_tokens: int = 8000
    agent_time_budget_s: float = 60.0
    max_definition_bytes: int = 256 * 1024

    @classmethod
    def from_settings(
        cls, settings: Settings, *, tool_names: frozenset[str] | None = None
    ) -> ValidationRules:
        workflows = settings.workflows
        return cls(
            max_nodes=workflows.max_nodes,
            max_map_concurrency=workflows.max_map_concurrency,
            llm_configured=settings.llm.provider != "none",
            tool_names=tool_names,
            agent_max_steps=workflows.agent_max_steps,
            agent_max_tokens=workflows.agent_max_tokens,
            agent_time_budget_s=workflows.agent_time_budget_s,
            max_definition_bytes=workflows.max_definition_bytes,
        )


def parse_definition(
    source: str | bytes | Mapping[str, Any], rules: ValidationRules
) -> WorkflowDefinition:
    """A validated definition from JSON or YAML text, or from an already decoded mapping."""
    if isinstance(source, str | bytes):
        size = len(source.encode() if isinstance(source, str) else source)
        if size > rules.max_definition_bytes:
            raise PayloadTooLarge(
                f"the definition has {size} bytes; at most {rules.max_definition_bytes}",
                code="definition_too_large",
            )
        try:
            data = json.loads(source)
        except ValueError:
            try:
                data = yaml.safe_load(source)
            except yaml.YAMLError as exc:
                raise _invalid([_problem("invalid_syntax", f"not JSON or YAML: {exc}")]) from exc
    else:
        data = source
        size = len(json.dumps(data, default=str).encode())
        if size > rules.max_definition_bytes:
            raise PayloadTooLarge(
                f"the definition has {size} bytes; at most {rules.max_definition_bytes}",
                code="definition_too_large",
            )
    if not isinstance(data, Mapping):
        raise _invalid([_problem("invalid_syntax", "a definition is a JSON or YAML object")])
    try:
        definition = WorkflowDefinition.model_validate(dict(data))
    except ValidationError as exc:
        raise _invalid(
            [
                _problem(
                    "invalid_field",
                    f"{_loc(error['loc'])}: {error['msg']}",
                    loc=_loc(error["loc"]),
                )
                for error in exc.errors(include_url=False)
            ]
        ) from exc
    check_definition(definition, rules)
    return definition


def load_definition(path: Path, rules: ValidationRules) -> WorkflowDefinition:
    """A validated definition from a ``.json``, ``.yaml`` or ``.yml`` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", code="unreadable_definition") from exc
    return parse_definition(text, rules)


def check_definition(definition: WorkflowDefinition, rules: ValidationRules) -> WorkflowGraph:
    """Every consistency and deployment problem of a parsed definition at once."""
    graph, problems = _analyse(definition)
    problems.extend(_rule_problems(definition, graph, rules))
    if problems:
        raise _invalid(problems)
    return graph


def _analyse(definition: WorkflowDefinition) -> tuple[WorkflowGraph, list[dict[str, Any]]]:
    problems: list[dict[str, Any]] = []
    placed: dict[str, PlacedNode] = {}
    _place(definition.nodes, (), placed, problems)
    edges: dict[str, set[str]] = {node_id: set() for node_id in placed}

    for node_id, where in placed.items():
        node = where.node
        in_map = any(placed[c].node.type == "map" for c, _ in where.scope if c in placed)
        wanted: dict[str, str] = dict.fromkeys(node.depends_on, "depends_on")
        for field_name, usage in _usages(node, problems):
            _check_roots(node, field_name, usage, in_map, problems)
            for target in usage.nodes:
                wanted.setdefault(target, field_name)
        for target, field_name in wanted.items():
            source_target = _lift(node_id, target, placed, problems, field_name)
            if source_target is not None:
                source, lifted = source_target
                edges[source].add(lifted)

    for name, value in (definition.output or {}).items():
        try:
            usage = value_usage(value)
        except ExpressionError as exc:
            problems.append(_problem(exc.code, exc.message, loc=f"output.{name}"))
            continue
        for root in usage.roots - {"input", "nodes"}:
            problems.append(
                _problem("unknown_variable", f"output.{name} reads {root!r}", loc=f"output.{name}")
            )
        for target in usage.nodes:
            if target not in placed:
                problems.append(
                    _problem(
                        "unknown_reference",
                        f"output.{name} reads node {target!r}, which does not exist",
                        loc=f"output.{name}",
                    )
                )
            elif _map_between((), placed[target].scope, placed):
                problems.append(
                    _problem(
                        "invalid_reference",
                        f"output.{name} reads {target!r} inside a map body; read the map's output",
                        loc=f"output.{name}",
                    )
                )

    dependencies = {node_id: frozenset(targets) for node_id, targets in edges.items()}
    problems.extend(_cycles(definition.nodes, dependencies, placed))
    return WorkflowGraph(definition, placed, dependencies), problems


def _place(
    nodes: Sequence[Node], scope: Scope, placed: dict[str, PlacedNode], problems: list[Any]
) -> None:
    for node in nodes:
        if not NODE_ID.match(node.id):
            problems.append(
                _problem(
                    "invalid_node_id",
                    f"node id {node.id!r}: 1-64 lowercase letters, digits or '_', starting "
                    "with a letter",
                    node=node.id,
                )
            )
        if node.id in placed:
            problems.append(
                _problem("duplicate_node_id", f"node id {node.id!r} is used twice", node=node.id)
            )
        else:
            placed[node.id] = PlacedNode(node, scope)
        for slot, children in node.scopes():
            _place(children, (*scope, (node.id, slot)), placed, problems)


def _usages(node: Node, problems: list[Any]) -> list[tuple[str, Usage]]:
    found: list[tuple[str, Usage]] = []
    steps: list[tuple[str, Any]] = [("", node)]
    if isinstance(node, LEAF_TYPES) and node.compensation is not None:
        steps.append(("compensation.", node.compensation))
    for prefix, step in steps:
        try:
            for field_name, usage in step.field_usage():
                if prefix:
                    usage.nodes.discard(node.id)  # a compensation reads its own node's output
                found.append((prefix + field_name, usage))
        except ExpressionError as exc:
            problems.append(_problem(exc.code, exc.message, node=node.id))
    return found


def _check_roots(
    node: Node, field_name: str, usage: Usage, in_map: bool, problems: list[Any]
) -> None:
    allowed = {"input", "nodes"}
    if in_map:
        allowed |= {"item", "index"}
    if field_name in ("headers", "compensation.headers"):  # only HTTP steps have headers
        allowed.add("secrets")
    for root in sorted(usage.roots - allowed):
        if root == "secrets":
            message = f"{field_name} reads secrets; only HTTP headers may"
            code = "secrets_not_allowed"
        elif root in ("item", "index"):
            message = f"{field_name} reads {root!r}, which exists only inside a map body"
            code = "unknown_variable"
        else:
            message = f"{field_name} reads {root!r}; the context has input, nodes (item, index)"
            code = "unknown_variable"
        problems.append(_problem(code, message, node=node.id, loc=field_name))


def _lift(
    node_id: str,
    target: str,
    placed: dict[str, PlacedNode],
    problems: list[Any],
    field_name: str,
) -> tuple[str, str] | None:
    """The edge ``node_id`` -> ``target`` expressed between two nodes of one list."""
    if target not in placed:
        problems.append(
            _problem(
                "unknown_reference",
                f"{field_name} refers to node {target!r}, which does not exist",
                node=node_id,
                loc=field_name,
            )
        )
        return None
    if target == node_id:
        problems.append(
            _problem("self_reference", f"{field_name} refers to the node itself", node=node_id)
        )
        return None
    source_scope, target_scope = placed[node_id].scope, placed[target].scope
    common = 0
    while (
        common < min(len(source_scope), len(target_scope))
        and source_scope[common] == target_scope[common]
    ):
        common += 1
    if _map_between(target_scope[:common], target_scope, placed):
        problems.append(
            _problem(
                "invalid_reference",
                f"{field_name} refers to {target!r} inside a map body; read the map's output",
                node=node_id,
                loc=field_name,
            )
        )
        return None
    source = node_id if len(source_scope) == common else source_scope[common][0]
    lifted = target if len(target_scope) == common else target_scope[common][0]
    if source == lifted:
        problems.append(
            _problem(
                "invalid_reference",
                f"{field_name} refers to {target!r}, which is its own container or in a "
                "sibling list of the same container",
                node=node_id,
                loc=field_name,
            )
        )
        return None
    return source, lifted


def _map_between(outer: Scope, inner: Scope, placed: dict[str, PlacedNode]) -> bool:
    """Whether a map body lies between scope ``outer`` and its nested scope ``inner``."""
    return any(
        container in placed and placed[container].node.type == "map"
        for container, _ in inner[len(outer) :]
    )


def _cycles(
    nodes: Sequence[Node], dependencies: dict[str, frozenset[str]], placed: dict[str, PlacedNode]
) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    ids = [n.id for n in nodes if n.id in placed and placed[n.id].node is n]
    done: set[str] = set()
    pending = list(ids)
    while pending:
        ready = [i for i in pending if dependencies.get(i, frozenset()) & set(ids) <= done]
        if not ready:
            problems.append(
                _problem(
                    "cycle",
                    f"nodes {', '.join(sorted(pending))} depend on each other in a cycle",
                    node=sorted(pending)[0],
                )
            )
            break
        done.update(ready)
        pending = [i for i in pending if i not in done]
    for node in nodes:
        for _, children in node.scopes():
            problems.extend(_cycles(children, dependencies, placed))
    return problems


def _rule_problems(
    definition: WorkflowDefinition, graph: WorkflowGraph, rules: ValidationRules
) -> Iterator[dict[str, Any]]:
    node_ids = graph.node_ids()
    if len(node_ids) > rules.max_nodes:
        yield _problem(
            "too_many_nodes", f"{len(node_ids)} nodes; a workflow has at most {rules.max_nodes}"
        )
    for name, spec in definition.input.items():
        if spec.default is not None and spec.problem(spec.default):
            yield _problem(
                "invalid_default",
                f"input.{name}: the default {spec.problem(spec.default)}",
                loc=f"input.{name}",
            )
    for node_id in node_ids:
        node = graph.node(node_id)
        yield from _node_rule_problems(node, rules)


def _node_rule_problems(node: Node, rules: ValidationRules) -> Iterator[dict[str, Any]]:
    if isinstance(node, MapNode) and node.max_concurrency > rules.max_map_concurrency:
        yield _problem(
            "map_concurrency_too_high",
            f"max_concurrency {node.max_concurrency}; at most {rules.max_map_concurrency}",
            node=node.id,
        )
    needs_llm = isinstance(node, AgentNode) or (isinstance(node, GenerateNode) and node.require_llm)
    if needs_llm and not rules.llm_configured:
        yield _problem(
            "llm_not_configured",
            f"a {node.type} node{' with require_llm' if node.type == 'generate' else ''} needs "
            "an LLM, and none is configured (QUARRY_LLM__PROVIDER=bedrock)",
            node=node.id,
        )
    tools: list[str] = []
    if isinstance(node, ToolNode | AgentNode):
        tools.extend([node.tool] if isinstance(node, ToolNode) else node.tools)
    if isinstance(node, LEAF_TYPES) and isinstance(node.compensation, ToolCompensation):
        tools.append(node.compensation.tool)
    if rules.tool_names is not None:
        for tool in tools:
            if tool not in rules.tool_names:
                yield _problem(
                    "unknown_tool",
                    f"tool {tool!r} is not registered; available: "
                    f"{', '.join(sorted(rules.tool_names)) or 'none'}",
                    node=node.id,
                )
    if isinstance(node, AgentNode):
        for field_name, limit in (
            ("max_steps", rules.agent_max_steps),
            ("max_tokens", rules.agent_max_tokens),
            ("time_budget_s", rules.agent_time_budget_s),
        ):
            value = getattr(node, field_name)
            if value is not None and value > limit:
                yield _problem(
                    "agent_budget_too_high",
                    f"{field_name} {value}; at most {limit}",
                    node=node.id,
                    loc=field_name,
                )


def _problem(
    code: str, message: str, *, node: str | None = None, loc: str | None = None
) -> dict[str, Any]:
    problem: dict[str, Any] = {"code": code, "message": message}
    if node is not None:
        problem["node"] = node
    if loc is not None:
        problem["loc"] = loc
    return problem


def _invalid(problems: list[dict[str, Any]]) -> InvalidInput:
    first = problems[0]
    where = f"node {first['node']}: " if "node" in first else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InvalidInput(
        f"invalid workflow: {where}{first['message']}{more}",
        code=INVALID_WORKFLOW,
        details={"errors": problems},
    )


def _loc(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
