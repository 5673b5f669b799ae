"""The database side of ingestion: document status, chunk rows by generation, publishing.

A document's chunks are written under a new generation and become visible only when ``publish``
flips ``documents.generation`` in one transaction, so readers see the old or the new chunks,
never a mix.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from shared.db.engine import Database
from shared.db.kb_repository import bump_version
from shared.db.models import Chunk, Document, utcnow


@dataclass(frozen=True)
class DocumentSpec:
    name: str
    media_type: str
    content_hash: str
    size_bytes: int
    blob_key: str | None
    force: bool = False  # re-process even when the content is unchanged


@dataclass(frozen=True)
class Registration:
    document_id: uuid.UUID
    name: str
    target_generation: int
    unchanged: bool


@dataclass(frozen=True)
class Publication:
    document_id: uuid.UUID
    generation: int
    chunk_count: int
    page_count: int | None


class IngestionRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def mark_pending(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, spec: DocumentSpec
    ) -> Document:
        """The document row an upload answers with, before its saga runs."""
        async with self._db.session() as session:
            doc = await _find(session, tenant_id, kb_id, spec.name)
            if doc is None:
                doc = Document(tenant_id=tenant_id, kb_id=kb_id, name=spec.name)
                session.add(doc)
            doc.status = "pending"
            doc.media_type = spec.media_type
            doc.size_bytes = spec.size_bytes
            doc.blob_key = spec.blob_key
            doc.error_code = doc.error_message = None
        return doc

    async def register(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, specs: Sequence[DocumentSpec]
    ) -> list[Registration]:
        """Creates or claims each document for processing. A ready document whose content hash
        is unchanged is left alone (the same bytes twice create nothing new)."""
        registrations: list[Registration] = []
        async with self._db.session() as session:
            existing = {
                d.name: d
                for d in (
                    await session.scalars(
                        select(Document).where(
                            Document.tenant_id == tenant_id,
                            Document.kb_id == kb_id,
                            Document.name.in_([s.name for s in specs]),
                        )
                    )
                ).all()
            }
            for spec in specs:
                doc = existing.get(spec.name)
                if doc is None:
                    doc = Document(tenant_id=tenant_id, kb_id=kb_id, name=spec.name, generation=0)
                    session.add(doc)
                    await session.flush()
                unchanged = (
                    not spec.force
                    and doc.status == "ready"
                    and doc.content_hash == spec.content_hash
                    and doc.generation > 0
                )
                if not unchanged:
                    doc.status = "processing"
                    doc.media_type = spec.media_type
                    doc.size_bytes = spec.size_bytes
                    doc.blob_key = spec.blob_key
                    doc.error_code = doc.error_message = None
                registrations.append(
                    Registration(doc.id, doc.name, (doc.generation or 0) + 1, unchanged)
                )
        return registrations

    async def mark_failed(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        names: Sequence[str],
        code: str,
        message: str,
        *,
        create: DocumentSpec | None = None,
    ) -> None:
        """Marks documents failed; ``create`` makes the row when the document is new."""
        async with self._db.session() as session:
            if create is not None and await _find(session, tenant_id, kb_id, create.name) is None:
                session.add(
                    Document(
                        tenant_id=tenant_id,
                        kb_id=kb_id,
                        name=create.name,
                        media_type=create.media_type,
                        size_bytes=create.size_bytes,
                        content_hash=create.content_hash,
                        blob_key=create.blob_key,
                    )
                )
                await session.flush()
            await session.execute(
                update(Document)
                .where(
                    Document.tenant_id == tenant_id,
                    Document.kb_id == kb_id,
                    Document.name.in_(list(names)),
                )
                .values(
                    status="failed",
                    error_code=code,
                    error_message=message[:2000],
                    updated_at=utcnow(),
                )
            )

    async def write_chunks(self, rows: list[dict[str, Any]], targets: dict[uuid.UUID, int]) -> None:
        """Replaces the chunk rows of each (document, target generation): re-runnable."""
        async with self._db.session() as session:
            for document_id, generation in targets.items():
                await session.execute(
                    delete(Chunk).where(
                        Chunk.document_id == document_id, Chunk.generation == generation
                    )
                )
            if rows:
                await session.execute(insert(Chunk), rows)

    async def delete_chunks(self, targets: dict[uuid.UUID, int]) -> None:
        async with self._db.session() as session:
            for document_id, generation in targets.items():
                await session.execute(
                    delete(Chunk).where(
                        Chunk.document_id == document_id, Chunk.generation == generation
                    )
                )

    async def current_generations(self, document_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not document_ids:
            return {}
        async with self._db.session() as session:
            rows = await session.execute(
                select(Document.id, Document.generation).where(Document.id.in_(document_ids))
            )
            return {doc_id: int(generation) for doc_id, generation in rows.all()}

    async def publish(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        publications: Sequence[Publication],
        content_hashes: dict[uuid.UUID, str],
    ) -> dict[uuid.UUID, int]:
        """Flips each document to its new generation and drops its older chunk rows, in one
        transaction; bumps the KB version. Returns each document's previous generation."""
        previous: dict[uuid.UUID, int] = {}
        async with self._db.session() as session:
            # Set-based: one read of the documents and one delete, not one per document.
            documents = {
                d.id: d
                for d in (
                    await session.scalars(
                        select(Document).where(
                            Document.tenant_id == tenant_id,
                            Document.id.in_([p.document_id for p in publications]),
                        )
                    )
                ).all()
            }
            for pub in publications:
                doc = documents.get(pub.document_id)
                if doc is None:
                    continue
                previous[doc.id] = doc.generation
                doc.generation = pub.generation
                doc.status = "ready"
                doc.chunk_count = pub.chunk_count
                doc.page_count = pub.page_count
                doc.content_hash = content_hashes.get(doc.id, doc.content_hash)
                doc.error_code = doc.error_message = None
            await session.flush()
            published = (
                select(Document.generation)
                .where(Document.id == Chunk.document_id)
                .scalar_subquery()
            )
            await session.execute(
                delete(Chunk)
                .where(Chunk.document_id.in_(list(previous)), Chunk.generation != published)
                .execution_options(synchronize_session=False)
            )
            if previous:
                await bump_version(session, kb_id)
        return previous


async def _find(session: Any, tenant_id: uuid.UUID, kb_id: uuid.UUID, name: str) -> Document | None:
    result: Document | None = await session.scalar(
        select(Document).where(
            Document.tenant_id == tenant_id, Document.kb_id == kb_id, Document.name == name
        )
    )
    return result
