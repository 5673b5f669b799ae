"""PostgreSQL row-level security: a query that forgets its tenant filter still sees only the
current tenant's rows, and the audit log is append-only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from shared.db.engine import Database, PoolConfig, tenant_scope, unscoped
from shared.db.migrate import upgrade
from shared.db.models import AuditEntry, KnowledgeBase, Tenant

pytestmark = pytest.mark.integration

POOL = PoolConfig(
    size=2, max_overflow=0, recycle_s=3600, timeout_s=10, pre_ping=True, warn_utilization=1.0
)


@pytest.fixture
def app_role(postgres_url: str) -> Iterator[str]:
    """A role like the application's in production: neither superuser nor BYPASSRLS (tests
    connect as a superuser, which row-level security never restricts)."""
    upgrade(postgres_url)
    role = f"quarry_app_{uuid.uuid4().hex[:8]}"
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS")
        admin.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
    try:
        yield role
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(postgres_url, POOL)
    try:
        yield db
    finally:
        await db.aclose()


async def add_kb(db: Database, tenant: uuid.UUID, name: str) -> None:
    async with db.session() as session:
        session.add(
            KnowledgeBase(
                tenant_id=tenant, name=name, embedding_model="m", embedding_dim=3,
                chunk_size_tokens=64, chunk_overlap_tokens=0,
            )
        )  # fmt: skip


async def add_kb_as(db: Database, role: str, tenant: uuid.UUID, name: str) -> None:
    async with db.session() as session:
        await session.execute(text(f"SET LOCAL ROLE {role}"))
        session.add(
            KnowledgeBase(
                tenant_id=tenant, name=name, embedding_model="m", embedding_dim=3,
                chunk_size_tokens=64, chunk_overlap_tokens=0,
            )
        )  # fmt: skip


async def test_a_query_without_its_tenant_filter_sees_only_the_scoped_tenant(
    database: Database, app_role: str
) -> None:
    tenants = []
    with unscoped():
        for _ in range(2):
            async with database.session() as session:
                tenant = Tenant(name=f"rls-{uuid.uuid4().hex[:8]}")
                session.add(tenant)
            tenants.append(tenant.id)
            await add_kb(database, tenant.id, f"kb-{uuid.uuid4().hex[:6]}")
    alice, bob = tenants

    token = tenant_scope.set(alice)
    try:
        async with database.session() as session:
            await session.execute(text(f"SET LOCAL ROLE {app_role}"))
            # The bug under test: no tenant filter at all.
            seen = {kb.tenant_id for kb in await session.scalars(select(KnowledgeBase))}
        assert seen == {alice}
        # Writing a row for another tenant is refused too.
        with pytest.raises((ProgrammingError, DBAPIError), match="row-level security"):
            await add_kb_as(database, app_role, bob, "smuggled")
    finally:
        tenant_scope.reset(token)

    # System work (no tenant scope) sees every tenant.
    async with database.session() as session:
        await session.execute(text(f"SET LOCAL ROLE {app_role}"))
        everyone = {kb.tenant_id for kb in await session.scalars(select(KnowledgeBase))}
    assert {alice, bob} <= everyone


async def test_the_audit_log_is_append_only(database: Database) -> None:
    async with database.session() as session:
        entry = AuditEntry(action="test.append", outcome="success", details={})
        session.add(entry)
    for statement in ("UPDATE audit_log SET outcome = 'denied'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with database.session() as session:
                await session.execute(text(f"{statement} WHERE id = :id"), {"id": entry.id})
