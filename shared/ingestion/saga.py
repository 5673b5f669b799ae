"""The ingestion saga: extract → register → chunk → embed → index → publish.

Each step reads what earlier steps left in the run's state and in private run artifacts (blob
keys under ``runs/``), so a failed run resumes from its failed step without redoing the costly
ones. Only ``index`` and ``publish`` touch what readers see: ``index`` writes chunk rows and
vectors under a new generation (its compensation deletes them), and ``publish`` flips documents
to that generation in one transaction. A failure anywhere therefore leaves the KB as it was.

Once a run has ended, its end hooks finish it: a run that succeeded drops its artifacts (kept
until then so that a failed run can resume); one that failed marks the documents it was
processing failed, with the run's error.

The same step functions are what the Step Functions state machine invokes in the cloud.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from shared.db.ingestion_repository import DocumentSpec, IngestionRepository, Publication
from shared.errors import QuarryError
from shared.ingestion.artifacts import (
    document_from_json,
    document_to_json,
    dumps,
    is_jsonl,
    page_count,
    text_hash,
)
from shared.ingestion.chunking import chunk_document
from shared.ingestion.extraction import ExtractionLimits, extract
from shared.ports.blob_store import BlobStore
from shared.ports.embedder import Embedder
from shared.ports.event_bus import DomainEvent, EventBus
from shared.ports.ocr import OcrEngine
from shared.ports.vector_store import ChunkRecord, IndexSpace, VectorStore
from shared.sagas.definition import RetryPolicy, SagaDefinition, SagaState, SagaStep
from shared.sagas.runner import SagaRunRecord

log = logging.getLogger(__name__)

SAGA_NAME = "ingestion"
CHUNK_NAMESPACE = uuid.UUID("6f0b7a52-5a0e-4c39-9f7e-1f1b2f5a9c11")


@dataclass(frozen=True)
class KbProfile:
    """What the saga needs to know about the target KB (fixed at KB creation)."""

    tenant_id: uuid.UUID
    kb_id: uuid.UUID
    space: IndexSpace
    embedding_model: str
    chunk_size_tokens: int
    chunk_overlap_tokens: int


@dataclass
class IngestionDeps:
    repository: IngestionRepository
    blobs: BlobStore
    vectors: VectorStore
    events: EventBus
    embedder: Callable[[], Embedder]  # lazy: loading a model is paid only when needed
    ocr: Callable[[], OcrEngine | None]
    limits: ExtractionLimits
    profile_of: Callable[[uuid.UUID, uuid.UUID], Any]  # async (tenant, kb) -> KbProfile


def run_prefix(tenant_id: str, kb_id: str, run_id: str) -> str:
    return f"runs/{tenant_id}/{kb_id}/{run_id}/"


def chunk_id_for(document_id: str, generation: int, ordinal: int) -> uuid.UUID:
    """Deterministic, so re-running a step rewrites the same chunks instead of adding more."""
    return uuid.uuid5(CHUNK_NAMESPACE, f"{document_id}/{generation}/{ordinal}")


class IngestionSteps:
    def __init__(self, deps: IngestionDeps) -> None:
        self.deps = deps

    def definition(self) -> SagaDefinition:
        # Waits of 1+2+4+8 s: long enough to ride out a model endpoint's open circuit
        # breaker (it fails fast until its reset), after which the run fails and can resume.
        transient = RetryPolicy(attempts=5, backoff_s=1.0)
        return SagaDefinition(
            SAGA_NAME,
            (
                SagaStep("extract", self.extract),
                SagaStep("register", self.register),
                SagaStep("chunk", self.chunk),
                SagaStep("embed", self.embed, retry=transient),
                SagaStep("index", self.index, compensation=self.unindex, retry=transient),
                SagaStep("publish", self.publish, retry=transient),
            ),
            on_success=self.drop_artifacts,
            on_failure=self.fail_documents,
        )

    async def _profile(self, state: SagaState) -> KbProfile:
        profile: KbProfile = await self.deps.profile_of(
            uuid.UUID(state["tenant_id"]), uuid.UUID(state["kb_id"])
        )
        return profile

    def _key(self, state: SagaState, name: str) -> str:
        return run_prefix(state["tenant_id"], state["kb_id"], state["run_id"]) + name

    # --- extract ---------------------------------------------------------------------------
    async def extract(self, state: SagaState) -> SagaState:
        """Reads each uploaded item; a bad file fails alone (recorded with its code)."""
        documents: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for item in state["items"]:
            try:
                data = await self.deps.blobs.get(item["blob_key"])
                extracted = await asyncio.to_thread(
                    extract,
                    data,
                    item["name"],
                    item.get("media_type"),
                    self.deps.limits,
                    self.deps.ocr(),
                )
            except QuarryError as exc:
                if exc.status_code >= 500:
                    raise
                failures.append({**item, "code": exc.code, "message": exc.message})
                continue
            single = len(extracted) == 1
            for doc in extracted:
                record = document_to_json(doc)
                # One upload, one document: its name is the upload's (relative path).
                # JSON Lines: each record is a document named by its ``_id``.
                record["name"] = item["name"] if single and not is_jsonl(item) else doc.name
                record["content_hash"] = (
                    item["content_hash"] if single else text_hash(doc.text, doc.title)
                )
                record["size_bytes"] = item["size"] if single else len(doc.text.encode())
                record["blob_key"] = item["blob_key"]
                record["force"] = bool(item.get("force"))
                record["source"] = item["name"]
                documents.append(record)
        await self.deps.blobs.put(self._key(state, "extracted.json"), dumps(documents))
        return {"failures": failures, "extracted_count": len(documents)}

    # --- register --------------------------------------------------------------------------
    async def register(self, state: SagaState) -> SagaState:
        tenant_id, kb_id = uuid.UUID(state["tenant_id"]), uuid.UUID(state["kb_id"])
        for failure in state["failures"]:
            spec = DocumentSpec(
                failure["name"],
                failure.get("media_type") or "application/octet-stream",
                failure["content_hash"],
                failure["size"],
                failure["blob_key"],
            )
            await self.deps.repository.mark_failed(
                tenant_id,
                kb_id,
                [failure["name"]],
                failure["code"],
                failure["message"],
                create=spec,
            )
        documents = json.loads(await self.deps.blobs.get(self._key(state, "extracted.json")))
        specs = [
            DocumentSpec(
                d["name"],
                d["media_type"],
                d["content_hash"],
                d["size_bytes"],
                d["blob_key"],
                force=d["force"],
            )
            for d in documents
        ]
        registrations = await self.deps.repository.register(tenant_id, kb_id, specs)
        targets = [
            {
                "document_id": str(r.document_id),
                "name": r.name,
                "generation": r.target_generation,
                "unchanged": r.unchanged,
                "content_hash": spec.content_hash,
                "source": d["source"],
            }
            for r, spec, d in zip(registrations, specs, documents, strict=True)
        ]
        return {"targets": targets}

    # --- chunk -----------------------------------------------------------------------------
    async def chunk(self, state: SagaState) -> SagaState:
        profile = await self._profile(state)
        documents = json.loads(await self.deps.blobs.get(self._key(state, "extracted.json")))
        rows: list[dict[str, Any]] = []
        pages: dict[str, int | None] = {}
        for target, record in zip(state["targets"], documents, strict=True):
            if target["unchanged"]:
                continue
            doc = document_from_json(record)
            pages[target["document_id"]] = page_count(doc)
            chunks = await asyncio.to_thread(
                chunk_document,
                doc,
                chunk_size_tokens=profile.chunk_size_tokens,
                chunk_overlap_tokens=profile.chunk_overlap_tokens,
            )
            for chunk in chunks:
                heading = " / ".join(p for p in (doc.title, chunk.section) if p)
                rows.append(
                    {
                        "id": str(
                            chunk_id_for(target["document_id"], target["generation"], chunk.ordinal)
                        ),
                        "document_id": target["document_id"],
                        "generation": target["generation"],
                        **asdict(chunk),
                        # Title- and section-aware: both search indexes see the heading too.
                        "search_text": f"{heading}\n{chunk.text}" if heading else chunk.text,
                    }
                )
        await self.deps.blobs.put(self._key(state, "chunks.json"), dumps(rows))
        return {"chunk_count": len(rows), "page_counts": pages}

    # --- embed -----------------------------------------------------------------------------
    async def embed(self, state: SagaState) -> SagaState | None:
        profile = await self._profile(state)
        rows = json.loads(await self.deps.blobs.get(self._key(state, "chunks.json")))
        embedder = self.deps.embedder()
        if embedder.model_name != profile.embedding_model:
            raise QuarryError(
                f"the KB uses {profile.embedding_model}; this deployment embeds with "
                f"{embedder.model_name}",
                code="embedding_model_unavailable",
            )
        vectors = await asyncio.to_thread(embedder.embed, [r["search_text"] for r in rows])
        buffer = io.BytesIO()
        np.save(buffer, vectors.astype(np.float32), allow_pickle=False)
        await self.deps.blobs.put(self._key(state, "embeddings.npy"), buffer.getvalue())
        return None

    # --- index -----------------------------------------------------------------------------
    async def index(self, state: SagaState) -> SagaState | None:
        profile = await self._profile(state)
        rows = json.loads(await self.deps.blobs.get(self._key(state, "chunks.json")))
        raw = await self.deps.blobs.get(self._key(state, "embeddings.npy"))
        vectors = np.load(io.BytesIO(raw), allow_pickle=False)
        targets = _changed_targets(state)
        db_rows = [
            {
                "id": uuid.UUID(r["id"]),
                "tenant_id": profile.tenant_id,
                "kb_id": profile.kb_id,
                "document_id": uuid.UUID(r["document_id"]),
                "generation": r["generation"],
                "ordinal": r["ordinal"],
                "text": r["text"],
                "page": r["page"],
                "section": r["section"],
                "char_start": r["char_start"],
                "char_end": r["char_end"],
                "token_count": r["token_count"],
            }
            for r in rows
        ]
        await self.deps.repository.write_chunks(db_rows, targets)
        records = [
            ChunkRecord(
                chunk_id=uuid.UUID(r["id"]),
                tenant_id=profile.tenant_id,
                kb_id=profile.kb_id,
                document_id=uuid.UUID(r["document_id"]),
                generation=r["generation"],
                search_text=r["search_text"],
            )
            for r in rows
        ]
        await self.deps.vectors.upsert(profile.space, records, vectors)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["document_id"]] = counts.get(r["document_id"], 0) + 1
        return {"chunk_counts": counts}

    async def unindex(self, state: SagaState) -> None:
        """Removes whatever ``index`` wrote (also when it failed half-way), except a generation
        that ``publish`` already made visible: once published, it is the KB's content."""
        profile = await self._profile(state)
        targets = _changed_targets(state)
        current = await self.deps.repository.current_generations(list(targets))
        targets = {d: g for d, g in targets.items() if current.get(d) != g}
        for document_id, generation in targets.items():
            await self.deps.vectors.delete(
                profile.space,
                profile.tenant_id,
                profile.kb_id,
                document_id=document_id,
                generation=generation,
            )
        await self.deps.repository.delete_chunks(targets)

    # --- publish ---------------------------------------------------------------------------
    async def publish(self, state: SagaState) -> SagaState:
        profile = await self._profile(state)
        counts: dict[str, int] = state.get("chunk_counts", {})
        changed = [t for t in state["targets"] if not t["unchanged"]]
        publications = [
            Publication(
                uuid.UUID(t["document_id"]),
                t["generation"],
                counts.get(t["document_id"], 0),
                state["page_counts"].get(t["document_id"]),
            )
            for t in changed
        ]
        hashes = {uuid.UUID(t["document_id"]): t["content_hash"] for t in changed}
        previous = await self.deps.repository.publish(
            profile.tenant_id, profile.kb_id, publications, hashes
        )
        # The old generation is invisible now (readers follow documents.generation); removing
        # its vectors is cleanup, and `quarry doctor` reports any that a crash left behind.
        for document_id, old in previous.items():
            target = next(t["generation"] for t in changed if t["document_id"] == str(document_id))
            if 0 < old != target:  # old == target: a resumed run publishing again
                try:
                    await self.deps.vectors.delete(
                        profile.space,
                        profile.tenant_id,
                        profile.kb_id,
                        document_id=document_id,
                        generation=old,
                    )
                except QuarryError:
                    log.warning("stale vectors of %s gen %d left for cleanup", document_id, old)
        for target in changed:
            await self._emit(
                "document.ready", state, target["document_id"], {"name": target["name"]}
            )
        if changed:
            await self._emit("kb.changed", state, None, {"documents": len(changed)})
        return {"published": len(changed)}

    # --- the run's end ---------------------------------------------------------------------
    async def drop_artifacts(self, run: SagaRunRecord) -> None:
        prefix = run_prefix(run.state["tenant_id"], run.state["kb_id"], run.state["run_id"])
        try:
            await self.deps.blobs.delete_prefix(prefix)
        except QuarryError:
            log.warning("could not remove the artifacts under %s", prefix)

    async def fail_documents(self, run: SagaRunRecord) -> None:
        """The documents the run was processing: those it registered (and had to change), or,
        when it failed before registering, every uploaded item."""
        state = run.state
        names = [t["name"] for t in state.get("targets", []) if not t["unchanged"]]
        names += [i["name"] for i in state.get("items", []) if "targets" not in state]
        if not names:
            return
        code = run.error_code or "ingestion_failed"
        await self.deps.repository.mark_failed(
            uuid.UUID(state["tenant_id"]),
            uuid.UUID(state["kb_id"]),
            names,
            code,
            run.error_message or "ingestion failed",
        )
        for name in names:
            await self._emit("document.failed", state, None, {"name": name, "code": code})

    async def _emit(
        self, kind: str, state: SagaState, document_id: str | None, detail: dict[str, Any]
    ) -> None:
        try:
            await self.deps.events.publish(
                DomainEvent(
                    type=kind,  # type: ignore[arg-type]
                    tenant_id=state["tenant_id"],
                    kb_id=state["kb_id"],
                    document_id=document_id,
                    detail=detail,
                )
            )
        except QuarryError:
            # Events inform subscribers (cache, tuner); the KB change itself is committed.
            log.warning("could not publish %s", kind, exc_info=True)


def _changed_targets(state: SagaState) -> dict[uuid.UUID, int]:
    return {
        uuid.UUID(t["document_id"]): int(t["generation"])
        for t in state.get("targets", [])
        if not t["unchanged"]
    }
