"""The threshold tuner on both databases: new versions with audit entries, the router's cached
view of them, and the Lambda schedule, HTTP routes and CLI that run it."""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from sqlalchemy import insert, select
from typer.testing import CliRunner

from functions.cli_tune import tune
from shared.db.engine import Database, PoolConfig
from shared.db.migrate import upgrade
from shared.db.models import AuditEntry, QueryEvent
from shared.db.tuning_repository import TUNER_PRINCIPAL, TuningRepository
from shared.settings import Settings
from shared.tuning.service import ThresholdProvider, tuning_service_for
from shared.tuning.thresholds import Thresholds
from tests.events import FakeLambdaContext, load_event
from tests.fixtures.auth import minted_bearer

pytestmark = pytest.mark.integration

# Far from the wall clock: rows other tests log now (on the shared PostgreSQL database) stay
# outside this test's window, and this test's rows outside theirs.
NOW = datetime(2031, 3, 3, 12, 0, tzinfo=UTC)
FAR_OFF = Thresholds(0.05, 0.20)  # far from the uniform ideal (0.45, 0.80): a run must move
POOL = PoolConfig(
    size=5, max_overflow=5, recycle_s=3600, timeout_s=30, pre_ping=True, warn_utilization=1.0
)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    upgrade(database_url)
    db = Database(database_url, POOL)
    try:
        yield db
    finally:
        await db.aclose()


async def log_queries(database: Database, now: datetime, count: int, *, age_h: float = 0) -> None:
    """``count`` uniform complexities in the hour before ``now - age_h``; modes as the defaults
    would route them, every tenth a cache hit."""
    rng = random.Random(count)
    rows: list[dict[str, Any]] = []
    for i in range(count):
        score = round(rng.random(), 4)
        rows.append(
            {
                "tenant_id": uuid.uuid4(),
                "kb_id": uuid.uuid4(),
                "created_at": now - timedelta(hours=age_h, seconds=1 + i % 3600),
                "mode": Thresholds(0.35, 0.70).mode_for(score),
                "complexity": score,
                "latency_ms": 50.0 + 100 * score,
                "stage_latencies_ms": {},
                "cache": "hit" if i % 10 == 0 else "miss",
                "degraded": False,
            }
        )
    async with database.session() as session:
        await session.execute(insert(QueryEvent), rows)


async def audit_entry(database: Database, resource: str) -> AuditEntry:
    async with database.session() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.resource == resource).order_by(AuditEntry.id.desc())
        )
    assert entry is not None
    return entry


async def test_run_appends_a_version_and_audits_it(
    database: Database, make_settings: Callable[..., Settings]
) -> None:
    repository = TuningRepository(database)
    settings = make_settings(tuning={"min_samples": 500})
    service = tuning_service_for(database, settings)
    await log_queries(database, NOW, 1000)
    await log_queries(database, NOW, 300, age_h=200)  # outside the 168 h window
    start = await repository.append(FAR_OFF.fast, FAR_OFF.deep, 0, "test start", {})

    decision = await service.run(NOW, trigger="test")

    assert decision.applied
    assert decision.details["samples"] == 1000
    assert decision.thresholds == Thresholds(0.10, 0.25)  # one 0.05 step each
    active = await service.active_config()
    assert active.version == start.version + 1
    assert active.thresholds == decision.thresholds
    stored = await repository.active()
    assert stored is not None
    assert stored.samples == 1000
    assert stored.reason == decision.reason
    assert stored.details["window_start"] == (NOW - timedelta(hours=168)).isoformat()
    entry = await audit_entry(database, f"tuning_config:{active.version}")
    assert (entry.action, entry.outcome, entry.principal) == (
        "tuning.run",
        "applied",
        TUNER_PRINCIPAL,
    )
    assert entry.details["previous_version"] == start.version
    assert entry.details["trigger"] == "test"


async def test_refused_run_stores_nothing_but_is_audited(
    database: Database, make_settings: Callable[..., Settings]
) -> None:
    repository = TuningRepository(database)
    service = tuning_service_for(database, make_settings())  # min_samples 1000
    later = NOW + timedelta(days=30)  # a window of its own
    await log_queries(database, later, 200)
    start = await repository.append(FAR_OFF.fast, FAR_OFF.deep, 0, "test start", {})

    decision = await service.run(later)

    assert decision.outcome == "refused"
    assert "only 200 queries" in decision.reason
    assert (await service.active_config()).version == start.version
    entry = await audit_entry(database, f"tuning_config:{start.version}")
    assert entry.outcome == "refused"
    assert entry.details["reason"] == decision.reason


async def test_concurrent_appends_get_distinct_versions(database: Database) -> None:
    repository = TuningRepository(database)
    first, second = await asyncio.gather(
        repository.append(0.3, 0.6, 0, "a", {}), repository.append(0.4, 0.7, 0, "b", {})
    )
    assert abs(first.version - second.version) == 1
    newest = await repository.active()
    assert newest is not None
    assert newest.version == max(first.version, second.version)


async def test_provider_caches_for_refresh_s_then_picks_up_a_new_version(
    database: Database,
) -> None:
    repository = TuningRepository(database)
    clock = FakeClock(NOW)
    provider = ThresholdProvider(repository, Thresholds(0.35, 0.70), refresh_s=60, clock=clock)
    old = await repository.append(0.30, 0.60, 0, "old", {})
    assert await provider.current() == Thresholds(0.30, 0.60)

    new = await repository.append(0.40, 0.80, 0, "new", {})
    clock.advance(59)
    assert await provider.current() == Thresholds(0.30, 0.60)  # still cached
    clock.advance(1)
    assert await provider.current() == Thresholds(0.40, 0.80)
    assert (await provider.active()).version == new.version == old.version + 1


async def test_provider_keeps_defaults_when_the_store_fails() -> None:
    class BrokenStore:
        async def active(self) -> None:
            raise ConnectionError("database down")

    provider = ThresholdProvider(BrokenStore(), Thresholds(0.35, 0.70), refresh_s=60)
    assert await provider.current() == Thresholds(0.35, 0.70)
    assert (await provider.active()).version == 0


async def test_http_routes(database_url: str, make_settings: Callable[..., Settings]) -> None:
    from functions.common.app_factory import create_app
    from functions.tuning.routes import router

    upgrade(database_url)
    settings = make_settings(db={"url": database_url}, tuning={"min_samples": 100})
    app = create_app("tuning", [router], settings=settings)
    database = app.state.container_provider.get().database
    await log_queries(database, datetime.now(UTC), 1000)
    await TuningRepository(database).append(FAR_OFF.fast, FAR_OFF.deep, 0, "test start", {})
    transport = httpx.ASGITransport(app=app)
    try:
        headers = minted_bearer(settings)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as client:
            before = (await client.get("/v1/tuning/config")).json()
            assert before["thresholds"] == FAR_OFF.to_dict()
            response = await client.post("/v1/tuning/run")
            assert response.status_code == 200
            body = response.json()
            assert body["outcome"] == "applied"
            assert body["details"]["trigger"] == "api"
            after = (await client.get("/v1/tuning/config")).json()
            assert after["version"] == before["version"] + 1
            assert after["thresholds"] == body["thresholds"]
    finally:
        await app.state.container_provider.aclose()


def test_http_config_defaults_to_version_0(make_settings: Callable[..., Settings]) -> None:
    from fastapi.testclient import TestClient

    from functions.common.app_factory import create_app
    from functions.tuning.routes import router

    settings = make_settings()
    upgrade(settings.database_url)
    with TestClient(create_app("tuning", [router], settings=settings)) as client:
        body = client.get("/v1/tuning/config", headers=minted_bearer(settings)).json()
    assert body == {"version": 0, "thresholds": {"fast": 0.35, "deep": 0.70}, "created_at": None}


@pytest.fixture
def tuning_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Settings from the environment, as in Lambda and the CLI: a migrated database with a
    window of logged queries and a far-off active config."""
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QUARRY_DB__URL", database_url)
    monkeypatch.setenv("QUARRY_TUNING__MIN_SAMPLES", "100")
    upgrade(database_url)

    async def seed() -> None:
        db = Database(database_url, POOL)
        try:
            await log_queries(db, datetime.now(UTC), 1000)
            await TuningRepository(db).append(FAR_OFF.fast, FAR_OFF.deep, 0, "test start", {})
        finally:
            await db.aclose()

    asyncio.run(seed())
    return database_url


@pytest.fixture
def tuning_handler(tuning_env: str) -> Iterator[Any]:
    import functions.tuning.app
    import functions.tuning.handler
    from functions.common.lambda_entry import run_async

    importlib.reload(functions.tuning.app)  # the app reads settings at import
    module = importlib.reload(functions.tuning.handler)
    try:
        yield module
    finally:
        run_async(module.app.state.container_provider.aclose())
        importlib.reload(functions.tuning.app)
        importlib.reload(functions.tuning.handler)


def test_lambda_runs_the_tuner_on_its_schedule(tuning_handler: Any) -> None:
    from functions.common.lambda_entry import run_async

    container = tuning_handler.app.state.container_provider.get()
    before = run_async(tuning_service_for(container.database, container.settings).active_config())

    event = load_event("eventbridge_scheduled_tuning")
    outcome = tuning_handler.lambda_handler(copy.deepcopy(event), FakeLambdaContext())

    assert outcome["outcome"] == "applied", outcome["reason"]
    assert outcome["details"]["trigger"] == "schedule"
    assert outcome["details"]["version"] == before.version + 1
    assert outcome["thresholds"] == {"fast": pytest.approx(0.10), "deep": pytest.approx(0.25)}
    entry = run_async(audit_entry(container.database, f"tuning_config:{before.version + 1}"))
    assert entry.outcome == "applied"


def test_lambda_refuses_other_event_shapes(tuning_handler: Any) -> None:
    event = copy.deepcopy(load_event("eventbridge_scheduled_tuning"))
    event["detail-type"] = "Object Created"
    event["source"] = "aws.s3"
    with pytest.raises(ValueError, match="does not handle"):
        tuning_handler.lambda_handler(event, FakeLambdaContext())


def test_cli_tune(tuning_env: str) -> None:
    app = typer.Typer()
    app.command()(tune)
    app.command("noop")(lambda: None)  # two commands: ``tune`` is a subcommand as in quarry
    runner = CliRunner()

    preview = runner.invoke(app, ["tune", "--dry-run", "--json"])
    assert preview.exit_code == 0, preview.output
    planned = json.loads(preview.stdout)
    assert planned["dry_run"] is True
    assert planned["outcome"] == "applied"
    assert "version" not in planned["details"]  # nothing stored

    ran = runner.invoke(app, ["tune", "--json"])
    assert ran.exit_code == 0, ran.output
    decision = json.loads(ran.stdout)
    assert decision["thresholds"] == planned["thresholds"]
    assert decision["details"]["version"] == decision["details"]["previous_version"] + 1
    assert decision["details"]["trigger"] == "cli"

    text = runner.invoke(app, ["tune"])
    assert text.exit_code == 0, text.output
    assert "applied" in text.stdout
    assert "projected mix" in text.stdout
