"""Consistency check of a KB: vectors, chunk rows and documents must agree.

Finds vectors without a visible chunk (orphans, e.g. from a crash between writes), visible
chunks without a vector, chunk rows of a generation their document does not publish, and
documents stuck in ``pending``/``processing``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.db.kb_repository import KbRepository
from shared.kb.service import KbService
from shared.ports.vector_store import VectorStore


@dataclass
class DoctorReport:
    kb: str
    vectors: int = 0
    chunks: int = 0
    orphan_vectors: list[str] = field(default_factory=list)
    chunks_without_vectors: list[str] = field(default_factory=list)
    stale_chunk_rows: list[str] = field(default_factory=list)
    stuck_documents: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not (
            self.orphan_vectors
            or self.chunks_without_vectors
            or self.stale_chunk_rows
            or self.stuck_documents
        )


async def diagnose(
    kbs: KbService,
    repository: KbRepository,
    vectors: VectorStore,
    tenant_id: uuid.UUID,
    kb_ref: str,
    *,
    stuck_after: timedelta = timedelta(minutes=15),
) -> DoctorReport:
    kb = await kbs.get(tenant_id, kb_ref)
    rows = await repository.all_chunk_keys(tenant_id, kb.id)
    visible = {chunk_id for chunk_id, _, generation, current in rows if generation == current}
    indexed = {c.chunk_id for c in await vectors.list_chunks(kbs.space(kb), tenant_id, kb.id)}
    stuck = await repository.stuck_documents(tenant_id, kb.id, datetime.now(UTC) - stuck_after)
    return DoctorReport(
        kb=kb.name,
        vectors=len(indexed),
        chunks=len(visible),
        orphan_vectors=sorted(str(c) for c in indexed - visible),
        chunks_without_vectors=sorted(str(c) for c in visible - indexed),
        stale_chunk_rows=sorted(
            str(chunk_id) for chunk_id, _, generation, current in rows if generation != current
        ),
        stuck_documents=sorted(d.name for d in stuck),
    )
