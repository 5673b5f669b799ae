"""An auth database on SQLite and on PostgreSQL, with a tenant and its users.

Until the auth tables have their migration these tests build the schema with ``create_all``, in
a PostgreSQL database of their own, so the migration tests' shared database stays untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, select

from shared.auth.audit import AuditEvent
from shared.auth.rbac import Principal, Role
from shared.auth.sessions import UserRecord
from shared.db.auth_repository import AuthRepository
from shared.db.engine import Database, PoolConfig
from shared.db.models import AuditEntry, Base, Tenant

POOL = PoolConfig(
    size=4, max_overflow=2, recycle_s=3600, timeout_s=10, pre_ping=True, warn_utilization=1.0
)


async def _create_schema(url: str) -> None:
    db = Database(url, POOL)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    finally:
        await db.aclose()


@pytest.fixture(scope="session")
def auth_postgres_url(postgres_url: str) -> Iterator[str]:
    base, name = postgres_url.rsplit("/", 1)
    own = f"{name}_auth"
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{own}"')
    url = f"{base}/{own}"
    engine = create_engine(url)  # psycopg 3 speaks sync too; no event loop is running here
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')


@pytest.fixture
async def database(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    if database_url.startswith("sqlite"):
        await _create_schema(database_url)
        url = database_url
    else:
        url = request.getfixturevalue("auth_postgres_url")
    db = Database(url, POOL)
    try:
        yield db
    finally:
        await db.aclose()


@pytest.fixture
def repository(database: Database) -> AuthRepository:
    return AuthRepository(database)


@pytest.fixture
def new_tenant(database: Database) -> Callable[[], Coroutine[Any, Any, uuid.UUID]]:
    async def create() -> uuid.UUID:
        async with database.session() as session:
            tenant = Tenant(name=f"tenant-{uuid.uuid4().hex[:10]}")
            session.add(tenant)
        return tenant.id

    return create


@pytest.fixture
async def tenant_id(new_tenant: Callable[[], Coroutine[Any, Any, uuid.UUID]]) -> uuid.UUID:
    return await new_tenant()


@pytest.fixture
def new_user(
    repository: AuthRepository, tenant_id: uuid.UUID
) -> Callable[..., Coroutine[Any, Any, UserRecord]]:
    async def create(
        role: Role = Role.MEMBER,
        password_hash: str = "unused",  # noqa: S107
        tenant: uuid.UUID | None = None,
    ) -> UserRecord:
        email = f"user-{uuid.uuid4().hex[:10]}@example.com"
        return await repository.create_user(tenant or tenant_id, email, password_hash, role)

    return create


def principal_of(user: UserRecord) -> Principal:
    return Principal("user", user.tenant_id, user.role, frozenset({"*"}), user_id=user.id)


async def audit_entries(database: Database, tenant_id: uuid.UUID | None) -> list[AuditEvent]:
    async with database.session() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.tenant_id == tenant_id).order_by(AuditEntry.id)
        )
        return [
            AuditEvent(
                r.action,
                r.outcome,  # type: ignore[arg-type]
                r.tenant_id,
                r.principal,
                r.resource,
                r.details,
            )
            for r in rows
        ]
