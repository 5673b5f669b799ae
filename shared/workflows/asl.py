"""Compiles a workflow definition into Amazon States Language: one Step Functions state machine
per workflow version, every task invoking the workflows step function (``shared.workflows.task``
runs the tasks). Pure: no AWS imports, and the same definition always compiles to the same
document (state names come from node ids, nodes in ``WorkflowGraph.order``), so a synthesized
template or a deployed machine only changes when the definition does.

**Execution input**: ``{"run_id": "<uuid>", "tenant_id": "<uuid>", "input": {...}}``, the run
recorded by the service beforehand and its validated input. Anything else is dropped.

**The state** the states hand on::

    {"run_id", "tenant_id",
     "key_prefix": "",                 # "<map>[<i>]." inside a map body (the engine's node keys)
     "context": {"input": {...},       # the run context the engine's expressions read
                 "nodes": {"<id>": {"status": "succeeded", "output": ...}},
                 "item": ..., "index": ...}}       # inside a map body only

so the step function evaluates references such as ``$.nodes.search.output.hits`` on exactly the
context the local engine builds. Every node task sends ``{"kind": "workflow_node", "run_id",
"tenant_id", "node": "<id>", "key_prefix", "attempt", "context"}``; what it returns is merged
back by ``ResultSelector``/``ResultPath``:

- a leaf node (retrieve, generate, http, transform, tool, agent) is a Task that returns
  ``{"status", "output"}``, stored at ``$.context.nodes.<id>``;
- ``approval`` is a ``lambda:invoke.waitForTaskToken`` Task that also sends ``$$.Task.Token``:
  the function records the approval with its token and returns; the task ends when the service
  sends the decision (``SendTaskSuccess`` with ``{"approved", "decided_by", "comment"}``, the
  node's output) or the rejection (``SendTaskFailure``, error ``approval_rejected``), or when its
  ``TimeoutSeconds`` (the approval's timeout) passes (``approval_expired``). No
  ``HeartbeatSeconds``: nobody heartbeats a human decision, so a heartbeat would only be a
  second, shorter timeout;
- ``branch`` is a Task that evaluates the condition and returns the whole new context (the
  branch's ``{"taken": "then" | "else"}`` and the nodes of the list not taken as ``skipped``,
  as the engine records them), then a Choice on ``$.context.nodes.<id>.output.taken`` into the
  two chains, which join again in the Pass state ``<id>.join``: no JMESPath becomes a Choice
  rule;
- ``parallel`` is a Parallel state, one branch per node list; its ``ResultSelector`` picks the
  records each branch added (and builds the parallel's output, the list of each branch's last
  output) and the Pass state ``<id>.merge`` merges them into the context (``States.JsonMerge``);
- ``map`` is a Task that resolves ``items`` (any reference or template, checked against the
  item limit) into ``$.map_items``, then the Map state ``<id>.each`` (``MaxConcurrency`` from the
  node) whose iterations start from the enclosing context plus ``item``/``index`` and the node
  key prefix; each iteration ends in ``<id>.output`` (its body's last output), and the list of
  them is the map's output.

A node list becomes a chain in ``WorkflowGraph.order``: nodes that do not depend on each other
run one after the other here (concurrency is what ``parallel`` and ``map`` are for); every node
still sees exactly the outputs it depends on.

**Retries and error names.** The step function fails a task with an error whose *name* (the
``errorType`` Step Functions matches) is the Quarry error code (``dependency_unavailable``,
``http_unavailable``, ``node_timeout``, ``node_error`` for an unexpected exception, ...), except
that an error the caller caused (a 4xx ``QuarryError``: bad config, a failed expression, an HTTP
4xx, ...) that the node's ``retry_on`` does not list is named ``caller_error``
(``error_name``). The message is JSON ``{"node", "code", "message"}``. A node's ``RetryPolicy``
then becomes retriers: Lambda's own transient errors first (as for sagas); with ``retry_on``,
one retrier on exactly those codes (``node_timeout`` also matches ``States.Timeout``); without,
``caller_error`` is never retried and everything else is (``States.ALL``). ``attempts - 1``
retries, ``backoff_s`` rounded up to whole seconds and doubling, at most ``max_backoff_s``
(``MaxDelaySeconds``): the local engine's policy. A leaf's ``TimeoutSeconds`` is its attempt
timeout (``timeout_s`` or the default) plus ``TASK_OVERHEAD_S`` for the invocation itself: the
function enforces the node timeout and reports ``node_timeout``; the state's timeout is the
backstop.

**Failure and compensation**, as the engine: a failure at the top level (a task, or a Parallel
or Map state whose branch failed) is caught into ``$.error`` and enters one chain of
compensation tasks (``<id>.compensate``, ``{"kind": "workflow_node", "node", "compensate":
true}``) that holds every compensable node in reverse order, at the last compensable node at or
before the failure (``shared.sagas.asl.chain_entry``). The chain's order is the compile order
reversed, which is the engine's reverse completion order except between nodes that ran
concurrently (parallel branches compensate last branch first). A compensation task compensates
what of its node completed (every item of a map body, last completed first) and is a no-op
otherwise; a failed compensation is caught and the chain goes on. Then ``RecordFailure``
records the run's end and the machine ends in the Fail state ``Compensated`` (error
``WorkflowCompensated``: every compensation owed ran) or ``Failed`` (``WorkflowFailed``: the
workflow defines no compensation, or one failed): the engine's ``compensated`` and ``failed``.
On success, ``RecordSuccess`` resolves the run's output (``{"output": ...}`` is the execution's
output) and the machine ends in ``Succeeded``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidInput
from shared.sagas.asl import (
    FAIL_STATE,
    SUCCEED_STATE,
    Asl,
    backoff_retrier,
    chain_entry,
    compensation_chain,
    lambda_task,
    no_retry,
    transient_lambda_retrier,
)
from shared.workflows.definition import (
    LEAF_TYPES,
    ApprovalNode,
    BranchNode,
    LeafNode,
    MapNode,
    Node,
    ParallelNode,
    RetryPolicy,
    WorkflowDefinition,
    WorkflowGraph,
)

NODE_TASK = "workflow_node"
END_TASK = "workflow_end"
CALLER_ERROR = "caller_error"
NODE_TIMEOUT = "node_timeout"
STATES_TIMEOUT = "States.Timeout"
STATES_ALL = "States.ALL"
START_STATE = "Start"
RECORD_SUCCESS_STATE = "RecordSuccess"
RECORD_FAILURE_STATE = "RecordFailure"
OUTCOME_STATE = "Outcome"
COMPENSATED_STATE = "Compensated"
FAILED_ERROR = "WorkflowFailed"
COMPENSATED_ERROR = "WorkflowCompensated"
# Seconds a leaf's TimeoutSeconds adds to its attempt timeout: the invocation itself (a cold
# start, the run's bookkeeping), so that the function reports the node's own timeout first.
TASK_OVERHEAD_S = 10
MAX_TIMEOUT_S = 99_999_999  # the largest TimeoutSeconds ASL takes (over three years)
# The tasks that are bookkeeping rather than a node's work (conditions, map items, the run's
# end): a few retries of anything but the caller's errors (the database may blink).
BOOKKEEPING_RETRY = RetryPolicy(attempts=3, backoff_s=1.0, max_backoff_s=10.0)


def compile_workflow(
    definition: WorkflowDefinition,
    *,
    step_function_arn: str,
    default_timeout_s: float,
    default_approval_timeout_s: float,
) -> Asl:
    """The state machine definition of ``definition``, each task invoking the workflows step
    function ``step_function_arn`` (an ARN or a function name). The defaults are the settings'
    (``QUARRY_WORKFLOWS__DEFAULT_NODE_TIMEOUT_S`` and ``..._APPROVAL_TIMEOUT_S``)."""
    compiler = _Compiler(
        definition.graph, step_function_arn, default_timeout_s, default_approval_timeout_s
    )
    return compiler.compile(definition)


def error_name(code: str, *, callers_fault: bool, policy: RetryPolicy | None) -> str:
    """The Step Functions error name of a failed task (see the module docstring)."""
    if callers_fault and (policy is None or code not in policy.retry_on):
        return CALLER_ERROR
    return code


def node_retriers(policy: RetryPolicy) -> list[Asl]:
    """The retriers of a node (or compensation) with this policy; the first that matches an
    error applies."""
    result = [transient_lambda_retrier()]
    if policy.attempts <= 1:
        return result
    timing: dict[str, Any] = {
        "attempts": policy.attempts,
        "backoff_s": policy.backoff_s,
        "max_backoff_s": policy.max_backoff_s,
    }
    if policy.retry_on:
        reserved = sorted(code for code in policy.retry_on if code.startswith("States."))
        if reserved:
            raise InvalidInput(
                f"retry_on lists {', '.join(reserved)}; it takes Quarry error codes",
                code="invalid_workflow",
            )
        names = set(policy.retry_on) | (
            {STATES_TIMEOUT} if NODE_TIMEOUT in policy.retry_on else set()
        )
        result.append(backoff_retrier(sorted(names), **timing))
    else:
        result.append(no_retry([CALLER_ERROR]))
        result.append(backoff_retrier([STATES_ALL], **timing))
    return result


@dataclass(frozen=True)
class _Where:
    """Where a node list is compiled: inside a map body (the context has ``item``/``index``),
    and at the machine's top level (only there can a state catch into the compensations)."""

    in_map: bool = False
    top: bool = True

    def nested(self, *, in_map: bool = False) -> _Where:
        return _Where(in_map=self.in_map or in_map, top=False)


@dataclass
class _Compiler:
    graph: WorkflowGraph
    function: str
    default_timeout_s: float
    default_approval_timeout_s: float
    # Every node in compile order gets a position; the compensable ones are the chain.
    position: int = -1
    compensable: dict[int, str] = field(default_factory=dict)  # position -> node id
    catching: list[tuple[Asl, int]] = field(default_factory=list)

    def compile(self, definition: WorkflowDefinition) -> Asl:
        start = {
            "Type": "Pass",
            # The execution input becomes the state; anything else in it is dropped.
            "Parameters": _state({"key_prefix": ""}, {"input.$": "$.input", "nodes": {}}),
            "Next": definition.nodes[0].id,
        }
        states: dict[str, Asl] = {START_STATE: start}
        states.update(self._chain(definition.nodes, _Where(), RECORD_SUCCESS_STATE))
        record_success = self._bookkeeping(_end_payload("succeeded"))
        record_success["ResultSelector"] = {"output.$": "$.Payload.output"}
        record_success["ResultPath"] = "$"
        record_success["Next"] = SUCCEED_STATE
        self.catching.append((record_success, self.position))
        states[RECORD_SUCCESS_STATE] = record_success
        states[SUCCEED_STATE] = {"Type": "Succeed"}

        compensations = self.compensable
        chain = compensation_chain(
            [_compensation_name(node_id) for node_id in compensations.values()],
            RECORD_FAILURE_STATE,
        )
        for (name, after), node_id in zip(chain, reversed(compensations.values()), strict=True):
            states[name] = self._compensation(node_id, after)
        for state, failed in self.catching:
            entry = chain_entry(list(compensations), failed)
            target = (
                RECORD_FAILURE_STATE if entry is None else _compensation_name(compensations[entry])
            )
            state["Catch"] = [
                {"ErrorEquals": [STATES_ALL], "ResultPath": "$.error", "Next": target}
            ]
        states.update(self._ends(definition))
        return {
            "Comment": f"The {definition.name} workflow, version {definition.version} "
            "(compiled by shared.workflows.asl)",
            "StartAt": START_STATE,
            "States": states,
        }

    # --- node lists and nodes ------------------------------------------------------------
    def _chain(self, nodes: Sequence[Node], where: _Where, after: str | None) -> dict[str, Asl]:
        """The states of a node list run one after the other, then ``after`` (None: the end of
        a Parallel branch or Map iteration). The first state of a node is named by its id."""
        ordered = self.graph.order(nodes)
        states: dict[str, Asl] = {}
        for index, node in enumerate(ordered):
            following = ordered[index + 1].id if index + 1 < len(ordered) else after
            states.update(self._node(node, where, following))
        return states

    def _node(self, node: Node, where: _Where, after: str | None) -> dict[str, Asl]:
        self.position += 1
        if isinstance(node, LEAF_TYPES):
            return {node.id: self._leaf(node, where, after)}
        if isinstance(node, ApprovalNode):
            return {node.id: self._approval(node, where, after)}
        if isinstance(node, BranchNode):
            return self._branch(node, where, after)
        if isinstance(node, ParallelNode):
            return self._parallel(node, where, after)
        if isinstance(node, MapNode):
            return self._map(node, where, after)
        raise TypeError(f"no compilation for {type(node).__name__}")

    def _leaf(self, node: LeafNode, where: _Where, after: str | None) -> Asl:
        state = lambda_task(self.function, _node_payload(node.id))
        state["ResultSelector"] = {"status.$": "$.Payload.status", "output.$": "$.Payload.output"}
        state["ResultPath"] = f"$.context.nodes.{node.id}"
        state["TimeoutSeconds"] = self._timeout(node.timeout_s or self.default_timeout_s)
        state["Retry"] = node_retriers(node.retry)
        if node.compensation is not None:
            self.compensable[self.position] = node.id
        return self._exit(state, where, after)

    def _approval(self, node: ApprovalNode, where: _Where, after: str | None) -> Asl:
        payload = {**_node_payload(node.id), "task_token.$": "$$.Task.Token"}
        del payload["attempt.$"]
        state = lambda_task(self.function, payload, wait_for_token=True)
        # The task's result is the decision the service sent with the token.
        state["ResultSelector"] = {"status": "succeeded", "output.$": "$"}
        state["ResultPath"] = f"$.context.nodes.{node.id}"
        timeout_s = math.ceil(node.timeout_s or self.default_approval_timeout_s)
        state["TimeoutSeconds"] = min(timeout_s, MAX_TIMEOUT_S)
        state["Retry"] = [transient_lambda_retrier()]
        return self._exit(state, where, after)

    def _branch(self, node: BranchNode, where: _Where, after: str | None) -> dict[str, Asl]:
        choice, join = f"{node.id}.choice", f"{node.id}.join"
        condition = self._bookkeeping(_node_payload(node.id))
        condition["ResultSelector"] = _context_fields(where, "$.Payload")
        condition["ResultPath"] = "$.context"
        condition["Next"] = choice
        if where.top:
            self.catching.append((condition, self.position))
        then = self._chain(node.then, where, join)
        otherwise = self._chain(node.else_, where, join)
        states: dict[str, Asl] = {node.id: condition}
        states[choice] = {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"$.context.nodes.{node.id}.output.taken",
                    "StringEquals": "then",
                    "Next": node.then[0].id if node.then else join,
                }
            ],
            "Default": node.else_[0].id if node.else_ else join,
        }
        states.update(then)
        states.update(otherwise)
        states[join] = _link({"Type": "Pass"}, after)
        return states

    def _parallel(self, node: ParallelNode, where: _Where, after: str | None) -> dict[str, Asl]:
        merge = f"{node.id}.merge"
        branches: list[Asl] = []
        picked: dict[str, Any] = {}
        last_outputs: list[str] = []
        for index, nodes in enumerate(node.branches):
            branches.append(
                {
                    "StartAt": self.graph.order(nodes)[0].id,
                    "States": self._chain(nodes, where.nested(), None),
                }
            )
            for node_id in _recorded(nodes):
                picked[f"{node_id}.$"] = f"$[{index}].context.nodes.{node_id}"
            last = nodes[-1].id
            last_outputs.append(f"$[{index}].context.nodes.{last}.output")
        picked[node.id] = {
            "status": "succeeded",
            "output.$": f"States.Array({', '.join(last_outputs)})",
        }
        state: Asl = {
            "Type": "Parallel",
            "Branches": branches,
            "ResultSelector": picked,
            "ResultPath": "$.parallel",
            "Next": merge,
        }
        if where.top:
            self.catching.append((state, self.position))
        context = _context_fields(where, "$.context")
        context["nodes.$"] = "States.JsonMerge($.context.nodes, $.parallel, false)"
        merged = {
            "Type": "Pass",
            "Parameters": _state({"key_prefix.$": "$.key_prefix"}, context),
        }
        return {node.id: state, merge: _link(merged, after)}

    def _map(self, node: MapNode, where: _Where, after: str | None) -> dict[str, Asl]:
        each, output = f"{node.id}.each", f"{node.id}.output"
        items = self._bookkeeping(_node_payload(node.id))
        items["ResultSelector"] = {"items.$": "$.Payload.items"}
        items["ResultPath"] = "$.map_items"
        items["Next"] = each
        if where.top:
            self.catching.append((items, self.position))
        body = self._chain(node.nodes, where.nested(in_map=True), output)
        last = node.nodes[-1].id
        body[output] = {"Type": "Pass", "OutputPath": f"$.context.nodes.{last}.output", "End": True}
        context = _context_fields(where, "$.context")
        context["item.$"] = "$$.Map.Item.Value"
        context["index.$"] = "$$.Map.Item.Index"
        key_prefix = f"States.Format('{{}}{node.id}[{{}}].', $.key_prefix, $$.Map.Item.Index)"
        state: Asl = {
            "Type": "Map",
            "ItemsPath": "$.map_items.items",
            "MaxConcurrency": node.max_concurrency,
            "ItemSelector": _state({"key_prefix.$": key_prefix}, context),
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": self.graph.order(node.nodes)[0].id,
                "States": body,
            },
            "ResultSelector": {"status": "succeeded", "output.$": "$"},
            "ResultPath": f"$.context.nodes.{node.id}",
        }
        if where.top:
            self.catching.append((state, self.position))
        return {node.id: items, each: _link(state, after)}

    # --- pieces --------------------------------------------------------------------------
    def _exit(self, state: Asl, where: _Where, after: str | None) -> Asl:
        if where.top:
            self.catching.append((state, self.position))
        return _link(state, after)

    def _timeout(self, timeout_s: float) -> int:
        return math.ceil(timeout_s) + TASK_OVERHEAD_S

    def _bookkeeping(self, payload: Asl) -> Asl:
        state = lambda_task(self.function, payload)
        state["Retry"] = node_retriers(BOOKKEEPING_RETRY)
        return state

    def _compensation(self, node_id: str, after: str) -> Asl:
        node = self.graph.node(node_id)
        assert isinstance(node, LEAF_TYPES)
        assert node.compensation is not None
        payload = {
            "kind": NODE_TASK,
            "run_id.$": "$.run_id",
            "tenant_id.$": "$.tenant_id",
            "node": node_id,
            "compensate": True,
            "attempt.$": "$$.State.RetryCount",
        }
        state = lambda_task(self.function, payload)
        state["ResultPath"] = None  # a compensation changes nothing in the state
        state["Retry"] = node_retriers(node.compensation.retry)
        state["Catch"] = [
            {"ErrorEquals": [STATES_ALL], "ResultPath": "$.compensation_error", "Next": after}
        ]
        state["Next"] = after
        return state

    def _ends(self, definition: WorkflowDefinition) -> dict[str, Asl]:
        compensates = bool(self.compensable)
        record = self._bookkeeping({**_end_payload("failed"), "error.$": "$.error"})
        record["ResultSelector"] = {"status.$": "$.Payload.status"}
        record["ResultPath"] = "$.outcome"
        record["Catch"] = [
            {"ErrorEquals": [STATES_ALL], "ResultPath": "$.record_error", "Next": FAIL_STATE}
        ]
        record["Next"] = OUTCOME_STATE if compensates else FAIL_STATE
        states: dict[str, Asl] = {RECORD_FAILURE_STATE: record}
        if compensates:
            states[OUTCOME_STATE] = {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.outcome.status",
                        "StringEquals": "compensated",
                        "Next": COMPENSATED_STATE,
                    }
                ],
                "Default": FAIL_STATE,
            }
            states[COMPENSATED_STATE] = {
                "Type": "Fail",
                "Error": COMPENSATED_ERROR,
                "Cause": f"a node of the {definition.name} workflow failed; its compensations "
                "ran (see the run)",
            }
        states[FAIL_STATE] = {
            "Type": "Fail",
            "Error": FAILED_ERROR,
            "Cause": f"a node of the {definition.name} workflow failed (see the run)",
        }
        return states


def _state(key_prefix: Asl, context: Asl) -> Asl:
    """Parameters that build the state anew (dropping scratch such as ``$.parallel``)."""
    return {"run_id.$": "$.run_id", "tenant_id.$": "$.tenant_id", **key_prefix, "context": context}


def _end_payload(outcome: str) -> Asl:
    return {
        "kind": END_TASK,
        "run_id.$": "$.run_id",
        "tenant_id.$": "$.tenant_id",
        "outcome": outcome,
        "context.$": "$.context",
    }


def _node_payload(node_id: str) -> Asl:
    return {
        "kind": NODE_TASK,
        "run_id.$": "$.run_id",
        "tenant_id.$": "$.tenant_id",
        "node": node_id,
        "key_prefix.$": "$.key_prefix",
        "attempt.$": "$$.State.RetryCount",
        "context.$": "$.context",
    }


def _context_fields(where: _Where, source: str) -> Asl:
    """Parameters copying the run context's fields from ``source``."""
    names = ("input", "nodes", "item", "index") if where.in_map else ("input", "nodes")
    return {f"{name}.$": f"{source}.{name}" for name in names}


def _recorded(nodes: Sequence[Node]) -> list[str]:
    """The nodes a node list records in the context: its own and those of nested lists, not
    those of map bodies (they run per item)."""
    found: list[str] = []
    for node in nodes:
        found.append(node.id)
        if not isinstance(node, MapNode):
            for _, children in node.scopes():
                found.extend(_recorded(children))
    return found


def _link(state: Asl, after: str | None) -> Asl:
    if after is None:
        state["End"] = True
    else:
        state["Next"] = after
    return state


def _compensation_name(node_id: str) -> str:
    return f"{node_id}.compensate"
