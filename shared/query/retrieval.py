"""Hybrid retrieval under a deadline, shaped by the mode's plan.

Every mode searches dense and keyword in parallel and fuses the two rankings. BALANCED takes a
larger candidate pool and fuses by normalised scores (a light re-ranking: a passage strong in
both lists rises above one that is merely high in either). DEEP also expands the query by
pseudo-relevance feedback, searches again with it (keyword and dense), and re-ranks the pool
with the cross-encoder when one is available (the GPU endpoint). Optional stages are skipped
when the deadline is short, and the result is then flagged ``degraded``. When the embedder is
unavailable (GPU endpoint down, circuit open) retrieval falls back to keyword only, also
flagged ``degraded``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from shared.db.engine import Database
from shared.db.kb_repository import ChunkHit, load_current_chunks
from shared.errors import DependencyUnavailable
from shared.ports.embedder import Embedder, Vectors
from shared.ports.reranker import Reranker
from shared.ports.vector_store import IndexSpace, ScoredChunk, VectorStore
from shared.query.deadline import Deadline
from shared.query.expansion import expansion_terms
from shared.query.router import Mode

log = logging.getLogger(__name__)

RRF_K = 60
Fusion = Literal["rrf", "scores"]


@dataclass(frozen=True)
class ModePlan:
    mode: Mode
    budget_ms: int
    top_k: int
    candidates: int
    fusion: Fusion
    expand: bool = False
    rerank: bool = False
    feedback_passages: int = 8
    rerank_pool: int = 50


@dataclass(frozen=True)
class Hit:
    chunk: ChunkHit
    score: float


@dataclass
class RetrievalResult:
    hits: list[Hit]
    degraded: bool = False
    stages_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def reciprocal_rank_fusion(
    ranked_lists: list[list[ScoredChunk]], weights: list[float]
) -> dict[uuid.UUID, float]:
    fused: dict[uuid.UUID, float] = {}
    for ranked, weight in zip(ranked_lists, weights, strict=True):
        for rank, hit in enumerate(ranked):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + weight / (RRF_K + rank + 1)
    return fused


def score_fusion(
    ranked_lists: list[list[ScoredChunk]], weights: list[float]
) -> dict[uuid.UUID, float]:
    """Min-max normalised scores, weighted and summed (absent from a list = 0 there)."""
    fused: dict[uuid.UUID, float] = {}
    for ranked, weight in zip(ranked_lists, weights, strict=True):
        if not ranked:
            continue
        top, bottom = ranked[0].score, ranked[-1].score
        span = (top - bottom) or 1.0
        for hit in ranked:
            fused[hit.chunk_id] = (
                fused.get(hit.chunk_id, 0.0) + weight * (hit.score - bottom) / span
            )
    return fused


class Retriever:
    def __init__(
        self,
        database: Database,
        vectors: VectorStore,
        embedder: Callable[[], Embedder],
        reranker: Callable[[], Reranker | None],
        *,
        dense_weight: float = 1.0,
        keyword_weight: float = 1.0,
    ) -> None:
        self._db = database
        self._vectors = vectors
        self._embedder = embedder
        self._reranker = reranker
        self._weights = (dense_weight, keyword_weight)

    async def retrieve(
        self,
        space: IndexSpace,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        query: str,
        plan: ModePlan,
        deadline: Deadline,
    ) -> RetrievalResult:
        result = RetrievalResult(hits=[])
        stages = result.stages_ms
        started = time.perf_counter()
        vector = await self._embed(query, result)
        stages["embed"] = _ms(started)

        started = time.perf_counter()
        lists, weights = await self._search(
            space, tenant_id, kb_id, query, vector, plan, deadline, result
        )
        stages["search"] = _ms(started)
        if vector is None:
            result.degraded = True
        fuse = score_fusion if plan.fusion == "scores" else reciprocal_rank_fusion
        fused = fuse(lists, weights)

        if plan.expand and fused:
            if deadline.allows(max(100.0, stages["search"] * 3)):
                started = time.perf_counter()
                fused = await self._expand(
                    space, tenant_id, kb_id, query, plan, fused, lists, weights, deadline, result
                )
                stages["expand"] = _ms(started)
            else:
                result.degraded = True
                result.notes.append("expansion skipped: deadline")

        ranked = sorted(fused, key=fused.__getitem__, reverse=True)
        started = time.perf_counter()
        pool = plan.rerank_pool if plan.rerank else plan.top_k * 2
        chunks = await load_current_chunks(
            self._db, tenant_id, kb_id, ranked[: max(pool, plan.top_k * 2)]
        )
        stages["load"] = _ms(started)
        ordered = [Hit(chunks[c], fused[c]) for c in ranked if c in chunks]

        if plan.rerank and ordered:
            reranker = self._reranker()
            if reranker is None:
                result.notes.append("no cross-encoder configured: fused ranking kept")
            elif deadline.allows(200.0):
                started = time.perf_counter()
                ordered = await self._rerank(reranker, query, ordered, deadline, result)
                stages["rerank"] = _ms(started)
            else:
                result.degraded = True
                result.notes.append("rerank skipped: deadline")
        result.hits = ordered[: plan.top_k]
        return result

    async def _embed(self, query: str, result: RetrievalResult) -> Vectors | None:
        try:
            embedder = self._embedder()
            vectors: Vectors = await asyncio.to_thread(embedder.embed, [query])
            first: Vectors = vectors[0]
            return first
        except DependencyUnavailable as exc:
            log.warning("embedding unavailable (%s): keyword-only retrieval", exc.code)
            result.notes.append(f"keyword only: {exc.code}")
            return None

    async def _search(
        self,
        space: IndexSpace,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        query: str,
        vector: Vectors | None,
        plan: ModePlan,
        deadline: Deadline,
        result: RetrievalResult,
    ) -> tuple[list[list[ScoredChunk]], list[float]]:
        """Dense and keyword in parallel, until the deadline. A list that is not back by then
        is dropped (degraded); if neither is, the first to finish is waited for: some result
        beats none."""
        searches: dict[str, asyncio.Task[list[ScoredChunk]]] = {
            "keyword": asyncio.create_task(
                self._vectors.search_keyword(space, tenant_id, kb_id, query, plan.candidates)
            )
        }
        if vector is not None:
            searches["dense"] = asyncio.create_task(
                self._vectors.search_dense(space, tenant_id, kb_id, vector, plan.candidates)
            )
        done, pending = await asyncio.wait(searches.values(), timeout=deadline.remaining_s())
        if not done:
            done, pending = await asyncio.wait(
                searches.values(), return_when=asyncio.FIRST_COMPLETED
            )
        for task in pending:
            task.cancel()
            result.degraded = True
        if pending:
            result.notes.append("a search missed the deadline")
        weights = {"dense": self._weights[0], "keyword": self._weights[1]}
        lists, list_weights = [], []
        for name in ("dense", "keyword"):
            search = searches.get(name)
            if search is not None and search in done:
                lists.append(search.result())
                list_weights.append(weights[name])
        return lists, list_weights

    async def _expand(
        self,
        space: IndexSpace,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        query: str,
        plan: ModePlan,
        fused: dict[uuid.UUID, float],
        lists: list[list[ScoredChunk]],
        weights: list[float],
        deadline: Deadline,
        result: RetrievalResult,
    ) -> dict[uuid.UUID, float]:
        top = sorted(fused, key=fused.__getitem__, reverse=True)[: plan.feedback_passages]
        chunks = await load_current_chunks(self._db, tenant_id, kb_id, top)
        feedback = [chunks[c].text for c in top if c in chunks]
        terms = expansion_terms(query, feedback)
        if not terms:
            return fused
        expanded = f"{query} {' '.join(terms)}"
        result.notes.append(f"expanded with: {', '.join(terms)}")
        extra, extra_weights = await self._search(
            space,
            tenant_id,
            kb_id,
            expanded,
            await self._embed(expanded, result),
            plan,
            deadline,
            result,
        )
        fuse = score_fusion if plan.fusion == "scores" else reciprocal_rank_fusion
        return fuse(lists + extra, weights + extra_weights)

    async def _rerank(
        self,
        reranker: Reranker,
        query: str,
        ordered: list[Hit],
        deadline: Deadline,
        result: RetrievalResult,
    ) -> list[Hit]:
        try:
            scores = await asyncio.wait_for(
                asyncio.to_thread(reranker.rerank, query, [h.chunk.text for h in ordered]),
                timeout=deadline.remaining_s(),
            )
        except (TimeoutError, DependencyUnavailable) as exc:
            result.degraded = True
            result.notes.append(f"rerank skipped: {type(exc).__name__}")
            return ordered
        rescored = [Hit(h.chunk, float(s)) for h, s in zip(ordered, scores, strict=True)]
        return sorted(rescored, key=lambda h: h.score, reverse=True)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
