"""Tenants, knowledge bases, documents and chunks in the database.

Every method takes the tenant: a KB, document or chunk of another tenant is simply not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.engine import Database
from shared.db.models import Chunk, Document, KbGrant, KnowledgeBase, Tenant, User, utcnow
from shared.errors import Conflict, NotFound
from shared.kb.access import KbGrantInfo, KbLevel


@dataclass(frozen=True)
class KbStats:
    documents: int
    documents_by_status: dict[str, int]
    chunks: int
    bytes: int


class KbRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    # --- tenants -------------------------------------------------------------------------
    async def ensure_tenant(self, name: str) -> uuid.UUID:
        async with self._db.session() as session:
            found = await session.scalar(select(Tenant.id).where(Tenant.name == name))
            if found is not None:
                return found
        try:
            async with self._db.session() as session:
                tenant = Tenant(name=name)
                session.add(tenant)
            return tenant.id
        except IntegrityError:  # created concurrently
            async with self._db.session() as session:
                return (await session.scalars(select(Tenant.id).where(Tenant.name == name))).one()

    # --- knowledge bases -----------------------------------------------------------------
    async def create_kb(self, kb: KnowledgeBase) -> KnowledgeBase:
        try:
            async with self._db.session() as session:
                session.add(kb)
        except IntegrityError as exc:
            raise Conflict(
                f"a knowledge base named {kb.name!r} already exists", code="kb_exists"
            ) from exc
        return kb

    async def list_kbs(self, tenant_id: uuid.UUID) -> Sequence[KnowledgeBase]:
        async with self._db.session() as session:
            query = (
                select(KnowledgeBase)
                .where(KnowledgeBase.tenant_id == tenant_id)
                .order_by(KnowledgeBase.name)
            )
            return (await session.scalars(query)).all()

    async def get_kb(self, tenant_id: uuid.UUID, ref: str) -> KnowledgeBase:
        """A KB by id or by name."""
        condition = _id_or_name(KnowledgeBase.id, KnowledgeBase.name, ref)
        async with self._db.session() as session:
            kb = await session.scalar(
                select(KnowledgeBase).where(KnowledgeBase.tenant_id == tenant_id, condition)
            )
        if kb is None:
            raise NotFound(f"knowledge base {ref!r} does not exist", code="kb_not_found")
        return kb

    # --- access grants -------------------------------------------------------------------
    async def grant_level(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, user_id: uuid.UUID
    ) -> str | None:
        async with self._db.session() as session:
            level: str | None = await session.scalar(
                select(KbGrant.level).where(
                    KbGrant.tenant_id == tenant_id,
                    KbGrant.kb_id == kb_id,
                    KbGrant.user_id == user_id,
                )
            )
        return level

    async def granted_kb_ids(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> set[uuid.UUID]:
        async with self._db.session() as session:
            ids = await session.scalars(
                select(KbGrant.kb_id).where(
                    KbGrant.tenant_id == tenant_id, KbGrant.user_id == user_id
                )
            )
            return set(ids)

    async def list_grants(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> list[KbGrantInfo]:
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(KbGrant.user_id, KbGrant.level)
                    .where(KbGrant.tenant_id == tenant_id, KbGrant.kb_id == kb_id)
                    .order_by(KbGrant.created_at, KbGrant.user_id)
                )
            ).all()
        return [KbGrantInfo(user_id, KbLevel(level)) for user_id, level in rows]

    async def replace_access(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        restricted: bool,
        grants: Sequence[KbGrantInfo],
    ) -> None:
        wanted = {g.user_id for g in grants}
        async with self._db.session() as session:
            if wanted:
                known = set(
                    await session.scalars(
                        select(User.id).where(User.tenant_id == tenant_id, User.id.in_(wanted))
                    )
                )
                missing = sorted(str(u) for u in wanted - known)
                if missing:
                    raise NotFound(
                        f"no such user in this tenant: {', '.join(missing)}",
                        code="user_not_found",
                        details={"users": missing},
                    )
            await session.execute(
                update(KnowledgeBase)
                .where(KnowledgeBase.tenant_id == tenant_id, KnowledgeBase.id == kb_id)
                .values(restricted=restricted, updated_at=utcnow())
            )
            await session.execute(
                delete(KbGrant).where(KbGrant.tenant_id == tenant_id, KbGrant.kb_id == kb_id)
            )
            for grant in grants:
                session.add(
                    KbGrant(
                        tenant_id=tenant_id,
                        kb_id=kb_id,
                        user_id=grant.user_id,
                        level=grant.level.value,
                    )
                )

    async def update_kb_description(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, description: str
    ) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(KnowledgeBase)
                .where(KnowledgeBase.tenant_id == tenant_id, KnowledgeBase.id == kb_id)
                .values(description=description, updated_at=utcnow())
            )

    async def delete_kb(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> None:
        async with self._db.session() as session:
            await session.execute(delete(Chunk).where(Chunk.kb_id == kb_id))
            await session.execute(
                delete(Document).where(Document.tenant_id == tenant_id, Document.kb_id == kb_id)
            )
            await session.execute(
                delete(KnowledgeBase).where(
                    KnowledgeBase.tenant_id == tenant_id, KnowledgeBase.id == kb_id
                )
            )

    async def stats(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> KbStats:
        async with self._db.session() as session:
            rows = (
                await session.execute(
                    select(
                        Document.status,
                        func.count(),
                        func.coalesce(func.sum(Document.size_bytes), 0),
                    )
                    .where(Document.tenant_id == tenant_id, Document.kb_id == kb_id)
                    .group_by(Document.status)
                )
            ).all()
            chunks = await session.scalar(
                select(func.count())
                .select_from(Chunk)
                .join(Document, Document.id == Chunk.document_id)
                .where(
                    Chunk.tenant_id == tenant_id,
                    Chunk.kb_id == kb_id,
                    Chunk.generation == Document.generation,
                )
            )
        by_status = {status: int(count) for status, count, _ in rows}
        return KbStats(
            documents=sum(by_status.values()),
            documents_by_status=by_status,
            chunks=int(chunks or 0),
            bytes=int(sum(int(size) for _, _, size in rows)),
        )

    # --- documents -----------------------------------------------------------------------
    async def list_documents(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        *,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Sequence[Document]:
        query = select(Document).where(Document.tenant_id == tenant_id, Document.kb_id == kb_id)
        if status:
            query = query.where(Document.status == status)
        query = query.order_by(Document.name).limit(limit).offset(offset)
        async with self._db.session() as session:
            return (await session.scalars(query)).all()

    async def get_document(self, tenant_id: uuid.UUID, kb_id: uuid.UUID, ref: str) -> Document:
        """A document by id or by name."""
        condition = _id_or_name(Document.id, Document.name, ref)
        async with self._db.session() as session:
            doc = await session.scalar(
                select(Document).where(
                    Document.tenant_id == tenant_id, Document.kb_id == kb_id, condition
                )
            )
        if doc is None:
            raise NotFound(f"document {ref!r} does not exist", code="document_not_found")
        return doc

    async def documents_named(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, names: Sequence[str]
    ) -> Sequence[Document]:
        async with self._db.session() as session:
            query = select(Document).where(
                Document.tenant_id == tenant_id,
                Document.kb_id == kb_id,
                Document.name.in_(list(set(names))),
            )
            return (await session.scalars(query)).all()

    async def find_document(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, name: str
    ) -> Document | None:
        async with self._db.session() as session:
            return await session.scalar(
                select(Document).where(
                    Document.tenant_id == tenant_id, Document.kb_id == kb_id, Document.name == name
                )
            )

    async def current_chunks(self, document: Document) -> Sequence[Chunk]:
        async with self._db.session() as session:
            query = (
                select(Chunk)
                .where(
                    Chunk.tenant_id == document.tenant_id,
                    Chunk.document_id == document.id,
                    Chunk.generation == document.generation,
                )
                .order_by(Chunk.ordinal)
            )
            return (await session.scalars(query)).all()

    async def delete_document(self, document: Document) -> None:
        async with self._db.session() as session:
            await session.execute(delete(Chunk).where(Chunk.document_id == document.id))
            await session.execute(
                delete(Document).where(
                    Document.tenant_id == document.tenant_id, Document.id == document.id
                )
            )
            await bump_version(session, document.kb_id)

    async def stuck_documents(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, older_than: datetime
    ) -> Sequence[Document]:
        async with self._db.session() as session:
            query = select(Document).where(
                Document.tenant_id == tenant_id,
                Document.kb_id == kb_id,
                Document.status.in_(("pending", "processing")),
                Document.updated_at < older_than,
            )
            return (await session.scalars(query)).all()

    async def all_chunk_keys(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, uuid.UUID, int, int]]:
        """(chunk id, document id, chunk generation, document generation) of every chunk row."""
        async with self._db.session() as session:
            rows = await session.execute(
                select(Chunk.id, Chunk.document_id, Chunk.generation, Document.generation)
                .join(Document, Document.id == Chunk.document_id)
                .where(Chunk.tenant_id == tenant_id, Chunk.kb_id == kb_id)
            )
            return [(a, b, int(c), int(d)) for a, b, c, d in rows.all()]


def _id_or_name(id_column: Any, name_column: Any, ref: str) -> Any:
    """Clients may address a KB or document by id or by name."""
    try:
        return (id_column == uuid.UUID(ref)) | (name_column == ref)
    except ValueError:
        return name_column == ref


async def bump_version(session: AsyncSession, kb_id: uuid.UUID) -> None:
    """Every change to a KB's content bumps its version (part of every query-cache key)."""
    await session.execute(
        update(KnowledgeBase)
        .where(KnowledgeBase.id == kb_id)
        .values(version=KnowledgeBase.version + 1, updated_at=utcnow())
    )


@dataclass(frozen=True)
class ChunkHit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    document: str
    text: str
    page: int | None
    section: str | None
    ordinal: int


async def load_current_chunks(
    database: Database, tenant_id: uuid.UUID, kb_id: uuid.UUID, chunk_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ChunkHit]:
    """The chunks among ``chunk_ids`` that readers may see: this tenant's and KB's, and of the
    generation their document currently publishes (stale or unpublished ones are dropped)."""
    if not chunk_ids:
        return {}
    async with database.session() as session:
        rows = await session.execute(
            select(Chunk, Document.name)
            .join(Document, Document.id == Chunk.document_id)
            .where(
                Chunk.id.in_(list(chunk_ids)),
                Chunk.tenant_id == tenant_id,
                Chunk.kb_id == kb_id,
                Document.tenant_id == tenant_id,
                Chunk.generation == Document.generation,
            )
        )
        return {
            chunk.id: ChunkHit(
                chunk.id,
                chunk.document_id,
                name,
                chunk.text,
                chunk.page,
                chunk.section,
                chunk.ordinal,
            )
            for chunk, name in rows.all()
        }
