"""A migrated database (SQLite and PostgreSQL) with a workflow service whose nodes call
recording test tools, a controllable clock and a recorded (instant) sleep."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.auth.audit import AuditEvent
from shared.auth.rbac import Principal, Role
from shared.db.engine import Database, PoolConfig
from shared.db.migrate import upgrade
from shared.db.models import Tenant
from shared.db.workflow_repository import WorkflowRepository
from shared.errors import DependencyUnavailable, InvalidInput
from shared.observability.metrics import PrometheusMetrics
from shared.workflows.definition import ValidationRules
from shared.workflows.engine import WorkflowEngine
from shared.workflows.launcher import LocalWorkflowLauncher
from shared.workflows.nodes import AgentBudget, NodeExecutors
from shared.workflows.service import WorkflowService
from shared.workflows.tools import Tool, ToolRegistry

POOL = PoolConfig(
    size=4, max_overflow=2, recycle_s=3600, timeout_s=10, pre_ping=True, warn_utilization=1.0
)
NAME_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "value": {}},
    "required": ["name"],
}


@dataclass
class ToolBox:
    """Test tools: ``record`` and ``undo`` note their calls; ``fail_at`` names make ``record``
    fail, ``flaky`` counts failures still to come per name, ``hang`` names never answer."""

    calls: list[str] = field(default_factory=list)
    fail_at: set[str] = field(default_factory=set)
    refuse_at: set[str] = field(default_factory=set)
    undo_fails_at: set[str] = field(default_factory=set)
    flaky: dict[str, int] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)  # set once a hang began

    async def record(self, arguments: dict[str, Any]) -> dict[str, Any]:
        name = arguments["name"]
        self.calls.append(name)
        if name in self.hang:
            self.hanging.set()
            await asyncio.Event().wait()
        if self.flaky.get(name, 0) > 0:
            self.flaky[name] -= 1
            raise DependencyUnavailable(f"{name} is down", code="backend_down")
        if name in self.refuse_at:
            raise InvalidInput(f"{name} refused", code="refused")
        if name in self.fail_at:
            raise RuntimeError(f"injected failure at {name}")
        return {"name": name, "value": arguments.get("value")}

    async def undo(self, arguments: dict[str, Any]) -> dict[str, Any]:
        name = arguments["name"]
        self.calls.append(f"undo:{name}")
        if name in self.undo_fails_at:
            raise RuntimeError(f"cannot undo {name}")
        return {"undone": name}

    def registry(self) -> ToolRegistry:
        return ToolRegistry(
            [
                Tool("record", "Record a call.", NAME_SCHEMA, self.record),
                Tool("undo", "Undo a call.", NAME_SCHEMA, self.undo),
            ]
        )


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)  # every reading is later than the one before
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class AuditLog:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record_audit(self, event: AuditEvent) -> None:
        self.events.append(event)

    def actions(self) -> list[str]:
        return [e.action for e in self.events]


@dataclass
class Harness:
    service: WorkflowService
    repository: WorkflowRepository
    tools: ToolBox
    clock: Clock
    audit: AuditLog
    sleeps: list[float]
    metrics: PrometheusMetrics
    owner: Principal
    database: Database

    def principal(self, role: Role = Role.OWNER, tenant_id: uuid.UUID | None = None) -> Principal:
        return Principal(
            "user", tenant_id or self.owner.tenant_id, role, frozenset({"*"}), user_id=uuid.uuid4()
        )

    async def new_tenant(self) -> uuid.UUID:
        async with self.database.session() as session:
            tenant = Tenant(name=f"tenant-{uuid.uuid4().hex[:10]}")
            session.add(tenant)
        return tenant.id


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    upgrade(database_url)
    db = Database(database_url, POOL)
    try:
        yield db
    finally:
        await db.aclose()


@pytest.fixture
def make_harness(database: Database) -> Callable[..., Any]:
    async def build(
        *,
        default_timeout_s: float = 5.0,
        max_map_items: int = 100,
        max_input_bytes: int = 10_000,
        http_client: Any = None,
        secrets: Any = None,
        **rules: Any,
    ) -> Harness:
        tools = ToolBox()
        registry = tools.registry()
        repository = WorkflowRepository(database)
        clock = Clock()
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        metrics = PrometheusMetrics()
        executors = NodeExecutors(
            query_service=_unavailable,
            kbs=_unavailable,
            answer_generator=lambda: None,
            tools=registry,
            http_client=(lambda: http_client) if http_client else _unavailable,
            secrets=(lambda: secrets) if secrets else _unavailable,
            agent_loop=None,
            agent_budget=AgentBudget(max_steps=4, max_tokens=1000, time_budget_s=10),
        )
        engine = WorkflowEngine(
            repository,
            executors,
            metrics,
            default_timeout_s=default_timeout_s,
            default_approval_timeout_s=3600,
            max_map_items=max_map_items,
            clock=clock,
            sleep=sleep,
        )
        audit = AuditLog()
        service = WorkflowService(
            repository,
            LocalWorkflowLauncher(engine),
            audit,
            ValidationRules(tool_names=executors.tool_names, **rules),
            max_input_bytes=max_input_bytes,
            clock=clock,
        )
        async with database.session() as session:
            tenant = Tenant(name=f"tenant-{uuid.uuid4().hex[:10]}")
            session.add(tenant)
        owner = Principal("user", tenant.id, Role.OWNER, frozenset({"*"}), user_id=uuid.uuid4())
        return Harness(service, repository, tools, clock, audit, sleeps, metrics, owner, database)

    return build


@pytest.fixture
async def harness(make_harness: Callable[..., Any]) -> AsyncIterator[Harness]:
    built: Harness = await make_harness()
    try:
        yield built
    finally:
        await built.service.aclose()


def _unavailable() -> Any:
    raise AssertionError("this harness was built without that service")


def record(node_id: str, *, undo: bool = True, **extra: Any) -> dict[str, Any]:
    """A tool node calling ``record`` under its own id, compensated by ``undo``."""
    node: dict[str, Any] = {
        "id": node_id,
        "type": "tool",
        "tool": "record",
        "input": {"name": node_id},
        **extra,
    }
    if undo:
        node["compensation"] = {"type": "tool", "tool": "undo", "input": {"name": node_id}}
    return node


def workflow(*nodes: dict[str, Any], name: str = "flow", **extra: Any) -> dict[str, Any]:
    return {"name": name, "nodes": list(nodes), **extra}
