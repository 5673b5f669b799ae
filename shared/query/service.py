"""The query use case: route, consult the cache, retrieve under the mode's deadline, answer
with citations, log the query event."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shared.auth.rbac import Permission, Principal
from shared.errors import InvalidInput
from shared.kb.service import KbService
from shared.observability.metrics import MetricsSink
from shared.query.answer import AnswerGenerator, extractive_answer, generated_answer
from shared.query.cache import QueryCache, cache_key
from shared.query.deadline import Deadline
from shared.query.event_log import QueryEventLog
from shared.query.retrieval import Hit, ModePlan, Retriever
from shared.query.router import Mode, complexity, select_mode

log = logging.getLogger(__name__)

FILTER_KEYS = frozenset({"document_prefix", "documents"})


class ThresholdSource(Protocol):
    async def current(self) -> Any:
        """The active thresholds: an object with ``fast`` and ``deep``."""
        ...


@dataclass(frozen=True)
class QueryRequest:
    query: str
    mode: Literal["auto", "fast", "balanced", "deep"] = "auto"
    top_k: int | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    answer: bool = True
    cache: bool = True  # False: neither read nor fill the cache (fresh results, benchmarks)


class QueryService:
    def __init__(
        self,
        *,
        kbs: KbService,
        retriever: Retriever,
        cache: QueryCache | None,
        events: QueryEventLog,
        thresholds: ThresholdSource,
        plans: dict[Mode, ModePlan],
        generator: Callable[[], AnswerGenerator | None],
        metrics: MetricsSink,
        max_query_chars: int = 2000,
        log_query_text: bool = False,
    ) -> None:
        self._kbs = kbs
        self._retriever = retriever
        self._cache = cache
        self._events = events
        self._thresholds = thresholds
        self._plans = plans
        self._generator = generator
        self._metrics = metrics
        self._max_chars = max_query_chars
        self._log_text = log_query_text

    def _validate(self, request: QueryRequest) -> None:
        text = request.query.strip()
        if not text:
            raise InvalidInput("the query is empty", code="empty_query")
        if len(text) > self._max_chars:
            raise InvalidInput(
                f"the query is longer than {self._max_chars} characters", code="query_too_long"
            )
        unknown = set(request.filters) - FILTER_KEYS
        if unknown:
            raise InvalidInput(
                f"unknown filters: {', '.join(sorted(unknown))}; "
                f"supported: {', '.join(sorted(FILTER_KEYS))}",
                code="invalid_filter",
            )

    async def query(
        self,
        tenant_id: uuid.UUID,
        kb_ref: str,
        request: QueryRequest,
        *,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """``principal``: whom the query is for; it must be allowed to read the KB (a restricted
        KB without a grant is ``kb_not_found``). None: trusted internal callers."""
        started = time.perf_counter()
        self._validate(request)
        if principal is not None:
            kb = await self._kbs.get_for(principal, kb_ref, Permission.KB_READ)
        else:
            kb = await self._kbs.get(tenant_id, kb_ref)
        score = complexity(request.query)
        if request.mode == "auto":
            active = await self._thresholds.current()
            mode: Mode = select_mode(score, active.fast, active.deep)
        else:
            mode = request.mode
        plan = self._plans[mode]
        top_k = request.top_k or plan.top_k
        options = {"top_k": top_k, "filters": request.filters, "answer": request.answer}
        key = cache_key(str(tenant_id), str(kb.id), kb.version, mode, request.query, options)

        cache = self._cache if request.cache else None
        if cache is not None:
            lookup = await cache.get(key, mode)
            if lookup.value is not None:
                cached = dict(lookup.value)
                cached.update(cache="hit", latency_ms=_ms(started), cache_level=lookup.level)
                await self._record(tenant_id, kb.id, request, cached)
                return cached

        deadline = Deadline(plan.budget_ms)
        wide = top_k * 4 if request.filters else top_k  # filters drop hits: fetch more
        retrieval = await self._retriever.retrieve(
            self._kbs.space(kb),
            tenant_id,
            kb.id,
            request.query,
            _with_top_k(plan, wide),
            deadline,
        )
        hits = _apply_filters(retrieval.hits, request.filters)[:top_k]
        result: dict[str, Any] = {
            "mode": mode,
            "complexity": score,
            "hits": [
                {
                    "document": h.chunk.document,
                    "chunk_id": str(h.chunk.chunk_id),
                    "score": round(h.score, 6),
                    "text": h.chunk.text,
                    "page": h.chunk.page,
                    "section": h.chunk.section,
                }
                for h in hits
            ],
            "answer": None,
            "citations": [],
            "degraded": retrieval.degraded,
            "stages_ms": retrieval.stages_ms,
            "notes": retrieval.notes,
        }
        if request.answer and hits:
            started_answer = time.perf_counter()
            answer = await self._answer(request.query, hits, deadline, result)
            result["answer"] = answer.text
            result["citations"] = [
                {"number": c.number, "document": c.document, "chunk_id": c.chunk_id, "page": c.page}
                for c in answer.citations
            ]
            result["stages_ms"]["answer"] = _ms(started_answer)
        if cache is not None and not result["degraded"]:
            await cache.put(key, mode, result)  # a degraded result is not worth keeping
        result.update(cache="miss", latency_ms=_ms(started))
        await self._record(tenant_id, kb.id, request, result)
        return result

    async def _answer(
        self, question: str, hits: list[Hit], deadline: Deadline, result: dict[str, Any]
    ) -> Any:
        generator = self._generator()
        if generator is not None and deadline.allows(500.0):
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(generated_answer, generator, question, hits),
                    timeout=deadline.remaining_s(),
                )
            except Exception as exc:  # any generation failure falls back to extraction
                log.warning("answer generation failed, extractive answer instead: %s", exc)
                result["degraded"] = True
        return extractive_answer(question, hits)

    async def _record(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, request: QueryRequest, result: dict[str, Any]
    ) -> None:
        mode, cache = result["mode"], result["cache"]
        self._metrics.increment("queries", mode=mode, cache=cache)
        self._metrics.observe_ms("query_latency", result["latency_ms"], mode=mode, cache=cache)
        if result["degraded"]:
            self._metrics.increment("queries_degraded", mode=mode)
        await self._events.add(
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant_id,
                "kb_id": kb_id,
                "created_at": datetime.now(UTC),
                "mode": mode,
                "complexity": result["complexity"],
                "latency_ms": result["latency_ms"],
                "stage_latencies_ms": result.get("stages_ms", {}),
                "cache": cache,
                "degraded": result["degraded"],
                "hit_count": len(result["hits"]),
                "query_text": request.query if self._log_text else None,
            }
        )


def _with_top_k(plan: ModePlan, top_k: int) -> ModePlan:
    from dataclasses import replace

    return replace(plan, top_k=top_k, candidates=max(plan.candidates, top_k))


def _apply_filters(hits: list[Hit], filters: dict[str, Any]) -> list[Hit]:
    prefix = filters.get("document_prefix")
    names = filters.get("documents")
    kept = hits
    if prefix:
        kept = [h for h in kept if h.chunk.document.startswith(str(prefix))]
    if names:
        allowed = {str(n) for n in names}
        kept = [h for h in kept if h.chunk.document in allowed]
    return kept


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
