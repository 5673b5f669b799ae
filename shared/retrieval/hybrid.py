"""Hybrid search: dense (vector) and keyword (BM25) results fused by reciprocal rank fusion."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shared.db.engine import Database
from shared.db.kb_repository import ChunkHit, load_current_chunks
from shared.ports.embedder import Embedder
from shared.ports.vector_store import IndexSpace, ScoredChunk, VectorStore

RRF_K = 60  # the usual constant: flattens the head so neither list dominates


@dataclass(frozen=True)
class SearchHit:
    chunk: ChunkHit
    score: float


def reciprocal_rank_fusion(
    ranked_lists: list[list[ScoredChunk]], weights: list[float], k: int = RRF_K
) -> dict[uuid.UUID, float]:
    fused: dict[uuid.UUID, float] = {}
    for ranked, weight in zip(ranked_lists, weights, strict=True):
        for rank, hit in enumerate(ranked):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + weight / (k + rank + 1)
    return fused


class HybridSearcher:
    def __init__(
        self,
        database: Database,
        vectors: VectorStore,
        embedder: Callable[[], Embedder],
        *,
        dense_weight: float = 1.0,
        keyword_weight: float = 1.0,
    ) -> None:
        self._db = database
        self._vectors = vectors
        self._embedder = embedder
        self._weights = [dense_weight, keyword_weight]

    async def search(
        self,
        space: IndexSpace,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        query: str,
        *,
        top_k: int = 10,
        candidates: int = 50,
    ) -> list[SearchHit]:
        embedder = self._embedder()
        vector = (await asyncio.to_thread(embedder.embed, [query]))[0]
        dense, keyword = await asyncio.gather(
            self._vectors.search_dense(space, tenant_id, kb_id, vector, candidates),
            self._vectors.search_keyword(space, tenant_id, kb_id, query, candidates),
        )
        fused = reciprocal_rank_fusion([dense, keyword], self._weights)
        ranked = sorted(fused, key=fused.__getitem__, reverse=True)
        chunks = await load_current_chunks(self._db, tenant_id, kb_id, ranked[: top_k * 3])
        hits = [SearchHit(chunks[cid], fused[cid]) for cid in ranked if cid in chunks]
        return hits[:top_k]
