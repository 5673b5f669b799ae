"""The chunk index port: dense vectors and a BM25 keyword index over the same chunks.

Every call names the tenant and the KB: isolation is enforced in the store, not only upstream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from shared.ports.embedder import Vectors


@dataclass(frozen=True)
class IndexSpace:
    """Where a KB's chunks live: one collection per embedding model and dimension."""

    collection: str
    dimension: int


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: uuid.UUID
    tenant_id: uuid.UUID
    kb_id: uuid.UUID
    document_id: uuid.UUID
    generation: int
    search_text: str


@dataclass(frozen=True)
class IndexedChunk:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    generation: int


@dataclass(frozen=True)
class ScoredChunk:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    generation: int
    score: float


class VectorStore(Protocol):
    async def ping(self) -> None: ...

    async def upsert(self, space: IndexSpace, records: list[ChunkRecord], vectors: Vectors) -> None:
        """Insert or replace chunks (vector + keyword-indexed text)."""
        ...

    async def delete(
        self,
        space: IndexSpace,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        *,
        document_id: uuid.UUID | None = None,
        generation: int | None = None,
    ) -> None: ...

    async def search_dense(
        self,
        space: IndexSpace,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        vector: Vectors,
        limit: int,
    ) -> list[ScoredChunk]: ...

    async def search_keyword(
        self, space: IndexSpace, tenant_id: uuid.UUID, kb_id: uuid.UUID, text: str, limit: int
    ) -> list[ScoredChunk]: ...

    async def list_chunks(
        self, space: IndexSpace, tenant_id: uuid.UUID, kb_id: uuid.UUID
    ) -> list[IndexedChunk]: ...

    def close(self) -> None: ...
