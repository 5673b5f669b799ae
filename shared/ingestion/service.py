"""Ingestion use cases: accept uploads, run and resume the saga, delete and re-index documents."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared.db.ingestion_repository import DocumentSpec, IngestionRepository
from shared.db.kb_repository import KbRepository
from shared.db.models import Document
from shared.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.ingestion.extraction import detect_kind
from shared.ingestion.s3_events import object_key
from shared.ingestion.saga import IngestionSteps
from shared.ports.event_bus import DomainEvent
from shared.ports.saga_launcher import SagaLauncher
from shared.sagas.definition import SagaDefinition
from shared.sagas.runner import SagaRunner, SagaRunRecord


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class StoredObject:
    """A document already in the blob store (an S3 upload)."""

    name: str
    blob_key: str
    size: int
    content_type: str | None = None


@dataclass
class IngestResult:
    run: SagaRunRecord | None
    unchanged: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return list(self.run.state.get("failures", [])) if self.run else []


class IngestionService:
    def __init__(
        self,
        *,
        steps: IngestionSteps,
        runner: SagaRunner,
        launcher: SagaLauncher,
        kbs: KbRepository,
        repository: IngestionRepository,
        max_file_bytes: int,
    ) -> None:
        self.steps = steps
        self.definition: SagaDefinition = steps.definition()
        self._runner = runner  # loads and resumes runs
        self._launcher = launcher  # starts them: in-process, or on Step Functions
        self._kbs = kbs
        self._repository = repository
        self._max_file_bytes = max_file_bytes

    def check_upload(self, upload: Upload) -> None:
        """Refuses at once what can never succeed: too large, empty, an unsupported type."""
        if len(upload.data) > self._max_file_bytes:
            raise PayloadTooLarge(
                f"the file is {len(upload.data)} bytes; "
                f"at most {self._max_file_bytes} are accepted",
                code="file_too_large",
            )
        if not upload.data.strip():
            raise InvalidInput("the file is empty", code="empty_document")
        detect_kind(upload.data, upload.name, upload.content_type)

    async def ingest_uploads(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, uploads: list[Upload]
    ) -> IngestResult:
        """Stores the uploads and runs one saga over them (whole batch, per-file failures)."""
        items: list[dict[str, Any]] = []
        unchanged: list[str] = []
        for upload in uploads:
            content_hash = hashlib.sha256(upload.data).hexdigest()
            if await self._is_unchanged(tenant_id, kb_id, upload.name, content_hash):
                unchanged.append(upload.name)
                continue
            key = object_key(str(tenant_id), str(kb_id), upload.name)
            await self.steps.deps.blobs.put(key, upload.data, upload.content_type)
            items.append(
                _item(upload.name, key, upload.content_type, content_hash, len(upload.data))
            )
        return await self._run(tenant_id, kb_id, items, unchanged)

    async def ingest_stored(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, objects: list[StoredObject]
    ) -> IngestResult:
        items: list[dict[str, Any]] = []
        unchanged: list[str] = []
        for obj in objects:
            data = await self.steps.deps.blobs.get(obj.blob_key)
            content_hash = hashlib.sha256(data).hexdigest()
            if await self._is_unchanged(tenant_id, kb_id, obj.name, content_hash):
                unchanged.append(obj.name)
                continue
            items.append(_item(obj.name, obj.blob_key, obj.content_type, content_hash, len(data)))
        return await self._run(tenant_id, kb_id, items, unchanged)

    async def accept(self, tenant_id: uuid.UUID, kb_id: uuid.UUID, upload: Upload) -> Document:
        """The document row (status ``pending``) an upload answers with before it is processed."""
        return await self._repository.mark_pending(
            tenant_id,
            kb_id,
            DocumentSpec(
                upload.name,
                upload.content_type or "application/octet-stream",
                "",
                len(upload.data),
                None,
            ),
        )

    async def _is_unchanged(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, name: str, content_hash: str
    ) -> bool:
        doc = await self._kbs.find_document(tenant_id, kb_id, name)
        return bool(doc and doc.status == "ready" and doc.content_hash == content_hash)

    async def _run(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        items: list[dict[str, Any]],
        unchanged: list[str],
    ) -> IngestResult:
        if not items:
            return IngestResult(run=None, unchanged=unchanged)
        run = await self._launcher.start(
            self.definition,
            tenant_id=tenant_id,
            kb_id=kb_id,
            state={"tenant_id": str(tenant_id), "kb_id": str(kb_id), "items": items},
        )
        return IngestResult(run=run, unchanged=unchanged)

    async def get_run(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, run_id: uuid.UUID
    ) -> SagaRunRecord:
        run = await self._runner.load(run_id)
        if run is None or run.tenant_id != tenant_id or run.kb_id != kb_id:
            raise NotFound(f"ingestion run {run_id} does not exist", code="run_not_found")
        return run

    async def resume(self, run_id: uuid.UUID) -> SagaRunRecord:
        return await self._runner.resume(self.definition, run_id)

    async def delete_document(self, document: Document) -> None:
        """Vectors first: a crash in between leaves chunk rows, which `doctor` reports."""
        profile = await self.steps.deps.profile_of(document.tenant_id, document.kb_id)
        await self.steps.deps.vectors.delete(
            profile.space, document.tenant_id, document.kb_id, document_id=document.id
        )
        await self._kbs.delete_document(document)
        if document.blob_key and document.blob_key.startswith("tenants/"):
            await self.steps.deps.blobs.delete(document.blob_key)
        await self.steps.deps.events.publish(
            DomainEvent(
                type="document.deleted",
                tenant_id=str(document.tenant_id),
                kb_id=str(document.kb_id),
                document_id=str(document.id),
                detail={"name": document.name},
            )
        )

    async def reindex_document(self, document: Document) -> IngestResult:
        if not document.blob_key:
            raise InvalidInput(
                f"document {document.name!r} has no stored source to re-index from",
                code="no_source",
            )
        data = await self.steps.deps.blobs.get(document.blob_key)
        item = _item(
            document.name,
            document.blob_key,
            document.media_type,
            hashlib.sha256(data).hexdigest(),
            len(data),
        )
        item["force"] = True  # the same bytes, processed again on purpose
        return await self._run(document.tenant_id, document.kb_id, [item], [])


def _item(
    name: str, key: str, content_type: str | None, content_hash: str, size: int
) -> dict[str, Any]:
    return {
        "name": name,
        "blob_key": key,
        "media_type": content_type,
        "content_hash": content_hash,
        "size": size,
    }
