"""The async database: engine, sessions and pool usage.

PostgreSQL goes through psycopg 3 (async); the local default is a SQLite file through aiosqlite.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

log = logging.getLogger(__name__)

# The tenant the current request acts for (set by the authentication dependency). On PostgreSQL
# every transaction publishes it as ``quarry.tenant_id``, which the row-level security policies
# (migration 0006) compare with each row's tenant: a second line of defence behind the
# repositories' own ``tenant_id`` filters. Unset (system work: migrations, sagas, tuning, login),
# the policies admit every row.
tenant_scope: ContextVar[uuid.UUID | None] = ContextVar("quarry_tenant_scope", default=None)
TENANT_SETTING = "quarry.tenant_id"


@contextmanager
def unscoped() -> Iterator[None]:
    """System work inside a request (e.g. writing a batch that spans tenants): no tenant scope."""
    token = tenant_scope.set(None)
    try:
        yield
    finally:
        tenant_scope.reset(token)


@dataclass(frozen=True)
class PoolConfig:
    size: int
    max_overflow: int
    recycle_s: int
    timeout_s: float
    pre_ping: bool
    warn_utilization: float


@dataclass(frozen=True)
class PoolUsage:
    size: int
    checked_out: int
    overflow: int
    capacity: int
    utilization: float
    waits: int
    wait_ms_total: float
    wait_ms_max: float


class InstrumentedQueuePool(AsyncAdaptedQueuePool):
    """A queue pool that records how long callers waited for a connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits = 0
        self.wait_ms_total = 0.0
        self.wait_ms_max = 0.0

    def _do_get(self) -> Any:
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            waited_ms = (time.perf_counter() - started) * 1000
            self.waits += 1
            self.wait_ms_total += waited_ms
            self.wait_ms_max = max(self.wait_ms_max, waited_ms)


class Database:
    """Owns the engine and hands out sessions. One per process (composition root)."""

    def __init__(
        self,
        url: str,
        pool: PoolConfig,
        *,
        echo: bool = False,
        password: Callable[[], str] | None = None,
    ) -> None:
        """``password``: called for every new connection (an IAM auth token); else the URL's."""
        self.url = url
        self._pool_config = pool
        self.engine: AsyncEngine = _create_engine(url, pool, echo=echo)
        if password is not None:
            password_per_connection(self.engine, password)
        sync_session_class: type[Session] = Session
        if self.engine.dialect.name == "postgresql":
            # A class of this database's own, so the listener touches no other engine's sessions.
            sync_session_class = type("TenantScopedSession", (Session,), {})
            event.listen(sync_session_class, "after_begin", _publish_tenant)
        self.sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=sync_session_class
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits on success, rolls back on error."""
        async with self.sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            finally:
                self._warn_if_pool_busy()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def pool_usage(self) -> PoolUsage | None:
        pool = self.engine.sync_engine.pool
        if not isinstance(pool, InstrumentedQueuePool):
            return None
        size = pool.size()
        checked_out = pool.checkedout()
        capacity = size + self._pool_config.max_overflow
        return PoolUsage(
            size=size,
            checked_out=checked_out,
            overflow=max(pool.overflow(), 0),
            capacity=capacity,
            utilization=checked_out / capacity if capacity else 0.0,
            waits=pool.waits,
            wait_ms_total=pool.wait_ms_total,
            wait_ms_max=pool.wait_ms_max,
        )

    def _warn_if_pool_busy(self) -> None:
        usage = self.pool_usage()
        if usage and usage.utilization > self._pool_config.warn_utilization:
            log.warning(
                "database pool above %.0f%% utilisation",
                self._pool_config.warn_utilization * 100,
                extra={"pool_checked_out": usage.checked_out, "pool_capacity": usage.capacity},
            )

    async def aclose(self) -> None:
        await self.engine.dispose()


def ensure_sqlite_dir(url: str) -> None:
    """SQLite creates the file but not its folder (the data dir on a fresh machine)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def password_per_connection(engine: AsyncEngine, password: Callable[[], str]) -> None:
    """Every new connection of ``engine`` authenticates with ``password()`` (short-lived
    credentials such as IAM auth tokens); open pooled connections keep theirs."""

    def connect_with_password(
        _dialect: Any, _record: Any, _args: Any, params: dict[str, Any]
    ) -> None:
        params["password"] = password()

    event.listen(engine.sync_engine, "do_connect", connect_with_password)


def _create_engine(url: str, pool: PoolConfig, *, echo: bool) -> AsyncEngine:
    if make_url(url).get_backend_name() == "sqlite":
        ensure_sqlite_dir(url)
        # SQLite allows one writer: a pool buys nothing, and NullPool avoids sharing a
        # connection across event loops (tests, CLI and server each run their own loop).
        engine = create_async_engine(
            url, echo=echo, poolclass=NullPool, connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        poolclass=InstrumentedQueuePool,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_recycle=pool.recycle_s,
        pool_timeout=pool.timeout_s,
        pool_pre_ping=pool.pre_ping,
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _publish_tenant(_session: Session, _transaction: SessionTransaction, connection: Any) -> None:
    tenant = tenant_scope.get()
    if tenant is not None:
        connection.execute(
            text("SELECT set_config(:name, :tenant, true)"),
            {"name": TENANT_SETTING, "tenant": str(tenant)},
        )
