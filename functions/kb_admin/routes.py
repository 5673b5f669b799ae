"""HTTP routes of the KB admin domain: knowledge bases, documents, ingestion runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Query, Response, UploadFile, status

from functions.common.dependencies import ContainerDep, KbCaller, KbManager, KbReader
from functions.common.health_routes import domain_health_router
from functions.kb_admin.schemas import (
    ChunkOut,
    DocumentDetail,
    DocumentList,
    DocumentOut,
    KbAccessIn,
    KbAccessOut,
    KbCreate,
    KbGrantOut,
    KbList,
    KbOut,
    KbStatsOut,
    KbUpdate,
    RunOut,
    UploadOut,
    UploadUrlOut,
    UploadUrlRequest,
)
from shared.auth.rbac import Permission
from shared.errors import InvalidInput
from shared.ingestion.s3_events import object_key
from shared.ingestion.service import IngestResult, Upload
from shared.kb.access import KbGrantInfo
from shared.kb.service import KbSpec
from shared.sagas.runner import SagaRunRecord

router = APIRouter(tags=["kb_admin"])
router.include_router(domain_health_router("kb_admin"))

UPLOAD_URL_TTL_S = 900


@router.post("/v1/kbs", status_code=status.HTTP_201_CREATED)
async def create_kb(body: KbCreate, principal: KbManager, container: ContainerDep) -> KbOut:
    kb = await container.kb_service.create(principal.tenant_id, KbSpec(**body.model_dump()))
    return KbOut.model_validate(kb)


@router.get("/v1/kbs")
async def list_kbs(principal: KbReader, container: ContainerDep) -> KbList:
    kbs = await container.kb_service.list_for(principal)
    return KbList(items=[KbOut.model_validate(kb) for kb in kbs])


@router.get("/v1/kbs/{kb}")
async def get_kb(kb: str, principal: KbCaller, container: ContainerDep) -> KbOut:
    return KbOut.model_validate(
        await container.kb_service.get_for(principal, kb, Permission.KB_READ)
    )


@router.patch("/v1/kbs/{kb}")
async def update_kb(kb: str, body: KbUpdate, principal: KbCaller, container: ContainerDep) -> KbOut:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_MANAGE)
    return KbOut.model_validate(
        await container.kb_service.update(principal.tenant_id, str(record.id), body.description)
    )


@router.delete("/v1/kbs/{kb}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_kb(kb: str, principal: KbCaller, container: ContainerDep) -> Response:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_MANAGE)
    await container.kb_service.delete(principal.tenant_id, str(record.id), actor=principal.subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/kbs/{kb}/stats")
async def kb_stats(kb: str, principal: KbCaller, container: ContainerDep) -> KbStatsOut:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_READ)
    record, stats = await container.kb_service.stats(principal.tenant_id, str(record.id))
    return KbStatsOut(
        kb=KbOut.model_validate(record),
        documents=stats.documents,
        documents_by_status=stats.documents_by_status,
        chunks=stats.chunks,
        bytes=stats.bytes,
    )


@router.post("/v1/kbs/{kb}/documents", status_code=status.HTTP_202_ACCEPTED)
async def upload_documents(
    kb: str,
    principal: KbCaller,
    container: ContainerDep,
    background: BackgroundTasks,
    response: Response,
    files: Annotated[list[UploadFile], File(description="One or more documents.")],
    wait: Annotated[bool, Query(description="Process before answering.")] = False,
) -> UploadOut:
    """Multipart upload. Answers 202 with the documents ``pending`` (poll them), or with
    ``wait=true`` 200 once processed."""
    record = await container.kb_service.get_for(principal, kb, Permission.KB_WRITE)
    service = container.ingestion_service
    uploads = []
    for part in files:
        if not part.filename:
            raise InvalidInput("every file part needs a filename", code="missing_filename")
        upload = Upload(part.filename, await part.read(), part.content_type)
        object_key(str(principal.tenant_id), str(record.id), upload.name)  # validates the name
        service.check_upload(upload)
        uploads.append(upload)
    if wait:
        result = await service.ingest_uploads(principal.tenant_id, record.id, uploads)
        response.status_code = status.HTTP_200_OK
        targets = result.run.state.get("targets", []) if result.run else []
        names = [u.name for u in uploads] + [t["name"] for t in targets]
        docs = await container.kb_repository.documents_named(principal.tenant_id, record.id, names)
        return UploadOut(
            documents=[DocumentOut.model_validate(d) for d in docs],
            unchanged=result.unchanged,
            run=_run_out(result.run) if result.run else None,
        )
    accepted = [await service.accept(principal.tenant_id, record.id, upload) for upload in uploads]
    background.add_task(service.ingest_uploads, principal.tenant_id, record.id, uploads)
    return UploadOut(documents=[DocumentOut.model_validate(d) for d in accepted])


@router.post("/v1/kbs/{kb}/documents/upload-url")
async def upload_url(
    kb: str, body: UploadUrlRequest, principal: KbCaller, container: ContainerDep
) -> UploadUrlOut:
    """A presigned S3 PUT URL (cloud): the upload's S3 notification starts ingestion."""
    record = await container.kb_service.get_for(principal, kb, Permission.KB_WRITE)
    key = object_key(str(principal.tenant_id), str(record.id), body.name)
    url = await container.blob_store.presigned_put_url(key, body.content_type, UPLOAD_URL_TTL_S)
    if url is None:
        raise InvalidInput(
            "presigned uploads need the S3 blob store; upload with POST .../documents",
            code="presigned_upload_unavailable",
        )
    return UploadUrlOut(url=url, key=key, expires_in=UPLOAD_URL_TTL_S)


@router.get("/v1/kbs/{kb}/documents")
async def list_documents(
    kb: str,
    principal: KbCaller,
    container: ContainerDep,
    status_filter: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DocumentList:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_READ)
    docs = await container.kb_repository.list_documents(
        principal.tenant_id, record.id, status=status_filter, limit=limit, offset=offset
    )
    return DocumentList(
        items=[DocumentOut.model_validate(d) for d in docs], limit=limit, offset=offset
    )


@router.get("/v1/kbs/{kb}/documents/{document}")
async def get_document(
    kb: str, document: str, principal: KbCaller, container: ContainerDep
) -> DocumentDetail:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_READ)
    doc = await container.kb_repository.get_document(principal.tenant_id, record.id, document)
    chunks = await container.kb_repository.current_chunks(doc)
    return DocumentDetail(
        **DocumentOut.model_validate(doc).model_dump(),
        chunks=[ChunkOut.model_validate(c) for c in chunks],
    )


@router.delete("/v1/kbs/{kb}/documents/{document}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_document(
    kb: str, document: str, principal: KbCaller, container: ContainerDep
) -> Response:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_WRITE)
    doc = await container.kb_repository.get_document(principal.tenant_id, record.id, document)
    await container.ingestion_service.delete_document(doc)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/kbs/{kb}/documents/{document}/reindex")
async def reindex_document(
    kb: str, document: str, principal: KbCaller, container: ContainerDep
) -> UploadOut:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_WRITE)
    doc = await container.kb_repository.get_document(principal.tenant_id, record.id, document)
    result: IngestResult = await container.ingestion_service.reindex_document(doc)
    doc = await container.kb_repository.get_document(principal.tenant_id, record.id, str(doc.id))
    return UploadOut(
        documents=[DocumentOut.model_validate(doc)],
        run=_run_out(result.run) if result.run else None,
    )


@router.get("/v1/kbs/{kb}/runs/{run_id}")
async def get_run(
    kb: str, run_id: uuid.UUID, principal: KbCaller, container: ContainerDep
) -> RunOut:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_READ)
    run = await container.ingestion_service.get_run(principal.tenant_id, record.id, run_id)
    return _run_out(run)


@router.post("/v1/kbs/{kb}/runs/{run_id}/resume")
async def resume_run(
    kb: str, run_id: uuid.UUID, principal: KbCaller, container: ContainerDep
) -> RunOut:
    record = await container.kb_service.get_for(principal, kb, Permission.KB_WRITE)
    await container.ingestion_service.get_run(principal.tenant_id, record.id, run_id)
    return _run_out(await container.ingestion_service.resume(run_id))


@router.get("/v1/kbs/{kb}/access")
async def get_access(kb: str, principal: KbCaller, container: ContainerDep) -> KbAccessOut:
    record, grants = await container.kb_service.access(principal, kb)
    return _access_out(record.restricted, grants)


@router.put("/v1/kbs/{kb}/access")
async def set_access(
    kb: str, body: KbAccessIn, principal: KbCaller, container: ContainerDep
) -> KbAccessOut:
    """Restrict the KB to the listed users (or open it to the tenant again)."""
    record, grants = await container.kb_service.set_access(
        principal, kb, body.restricted, [(g.user_id, g.level) for g in body.grants]
    )
    return _access_out(record.restricted, grants)


def _access_out(restricted: bool, grants: Sequence[KbGrantInfo]) -> KbAccessOut:
    return KbAccessOut(
        restricted=restricted,
        grants=[KbGrantOut(user_id=g.user_id, level=g.level.value) for g in grants],
    )


def _run_out(run: SagaRunRecord) -> RunOut:
    return RunOut(
        id=run.id,
        status=run.status,
        error_code=run.error_code,
        error_message=run.error_message,
        steps=run.step_status,
        failures=[
            {"name": f["name"], "code": f["code"], "message": f["message"]}
            for f in run.state.get("failures", [])
        ],
    )
