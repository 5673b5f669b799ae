"""Knowledge-base use cases. A KB's embedding model and chunking are fixed when it is created:
changing them would mix incompatible vectors and chunk shapes in one index."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.auth.audit import AuditEvent, AuditSink
from shared.auth.rbac import Permission, Principal, require
from shared.db.kb_repository import KbRepository, KbStats
from shared.db.models import KnowledgeBase
from shared.errors import InvalidInput
from shared.ingestion.saga import KbProfile
from shared.kb.access import KbGrantInfo, check_kb_access, checked_grants, visible_kbs
from shared.ports.blob_store import BlobStore
from shared.ports.event_bus import DomainEvent, EventBus
from shared.ports.vector_store import IndexSpace, VectorStore

# The tenant of the local server and CLI (the cloud takes tenants from the authorizer).
LOCAL_TENANT = "default"
# Embedding models this deployment can serve, with their dimension.
EMBEDDING_MODELS = {"all-MiniLM-L6-v2": 384}
KB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class KbSpec:
    name: str
    description: str = ""
    embedding_model: str = "all-MiniLM-L6-v2"
    chunk_size_tokens: int = 256
    chunk_overlap_tokens: int = 32


def index_space(prefix: str, model: str, dimension: int) -> IndexSpace:
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
    return IndexSpace(collection=f"{prefix}_{slug}_{dimension}", dimension=dimension)


class KbService:
    def __init__(
        self,
        repository: KbRepository,
        vectors: VectorStore,
        blobs: BlobStore,
        events: EventBus,
        *,
        collection_prefix: str,
        max_chunk_tokens: int = 512,
        audit: AuditSink | None = None,
    ) -> None:
        self.repository = repository
        self._audit = audit
        self._vectors = vectors
        self._blobs = blobs
        self._events = events
        self._prefix = collection_prefix
        self._max_chunk_tokens = max_chunk_tokens

    async def create(self, tenant_id: uuid.UUID, spec: KbSpec) -> KnowledgeBase:
        if not KB_NAME.match(spec.name):
            raise InvalidInput(
                "a KB name is 1-100 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit",
                code="invalid_kb_name",
            )
        dimension = EMBEDDING_MODELS.get(spec.embedding_model)
        if dimension is None:
            raise InvalidInput(
                f"unknown embedding model {spec.embedding_model!r}; "
                f"available: {', '.join(EMBEDDING_MODELS)}",
                code="unknown_embedding_model",
            )
        if not 16 <= spec.chunk_size_tokens <= self._max_chunk_tokens:
            raise InvalidInput(
                f"chunk_size_tokens must be between 16 and {self._max_chunk_tokens}",
                code="invalid_chunking",
            )
        if not 0 <= spec.chunk_overlap_tokens < spec.chunk_size_tokens // 2:
            raise InvalidInput(
                "chunk_overlap_tokens must be at least 0 and under half the chunk size",
                code="invalid_chunking",
            )
        kb = KnowledgeBase(
            tenant_id=tenant_id,
            name=spec.name,
            description=spec.description,
            embedding_model=spec.embedding_model,
            embedding_dim=dimension,
            chunk_size_tokens=spec.chunk_size_tokens,
            chunk_overlap_tokens=spec.chunk_overlap_tokens,
            version=1,
        )
        return await self.repository.create_kb(kb)

    async def list(self, tenant_id: uuid.UUID) -> Sequence[KnowledgeBase]:
        return await self.repository.list_kbs(tenant_id)

    async def get(self, tenant_id: uuid.UUID, ref: str) -> KnowledgeBase:
        return await self.repository.get_kb(tenant_id, ref)

    async def get_for(
        self, principal: Principal, ref: str, permission: Permission
    ) -> KnowledgeBase:
        """The principal's tenant's KB, if the principal may do ``permission`` on it (a
        restricted KB the principal has no grant on answers ``kb_not_found``)."""
        kb = await self.repository.get_kb(principal.tenant_id, ref)
        await check_kb_access(self.repository, principal, kb, permission)
        return kb

    async def list_for(self, principal: Principal) -> Sequence[KnowledgeBase]:
        require(principal, Permission.KB_READ)
        kbs = await self.repository.list_kbs(principal.tenant_id)
        return await visible_kbs(self.repository, principal, kbs)

    async def access(
        self, principal: Principal, ref: str
    ) -> tuple[KnowledgeBase, Sequence[KbGrantInfo]]:
        kb = await self.get_for(principal, ref, Permission.KB_MANAGE)
        return kb, await self.repository.list_grants(principal.tenant_id, kb.id)

    async def set_access(
        self,
        principal: Principal,
        ref: str,
        restricted: bool,
        grants: Iterable[tuple[uuid.UUID, str]],
    ) -> tuple[KnowledgeBase, Sequence[KbGrantInfo]]:
        """Restricts (or opens) the KB and replaces its grants; audited as ``kb.access``."""
        kb = await self.get_for(principal, ref, Permission.KB_MANAGE)
        wanted = checked_grants(grants)
        await self.repository.replace_access(principal.tenant_id, kb.id, restricted, wanted)
        if self._audit is not None:
            await self._audit.record_audit(
                AuditEvent(
                    "kb.access",
                    "success",
                    principal.tenant_id,
                    principal.subject,
                    f"kb:{kb.id}",
                    {
                        "restricted": restricted,
                        "grants": {str(g.user_id): g.level.value for g in wanted},
                    },
                )
            )
        return await self.access(principal, str(kb.id))

    async def update(self, tenant_id: uuid.UUID, ref: str, description: str) -> KnowledgeBase:
        kb = await self.repository.get_kb(tenant_id, ref)
        await self.repository.update_kb_description(tenant_id, kb.id, description)
        return await self.repository.get_kb(tenant_id, str(kb.id))

    async def stats(self, tenant_id: uuid.UUID, ref: str) -> tuple[KnowledgeBase, KbStats]:
        kb = await self.repository.get_kb(tenant_id, ref)
        return kb, await self.repository.stats(tenant_id, kb.id)

    def space(self, kb: KnowledgeBase) -> IndexSpace:
        return index_space(self._prefix, kb.embedding_model, kb.embedding_dim)

    async def profile(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> KbProfile:
        kb = await self.repository.get_kb(tenant_id, str(kb_id))
        return KbProfile(
            tenant_id=tenant_id,
            kb_id=kb.id,
            space=self.space(kb),
            embedding_model=kb.embedding_model,
            chunk_size_tokens=kb.chunk_size_tokens,
            chunk_overlap_tokens=kb.chunk_overlap_tokens,
        )

    async def delete(self, tenant_id: uuid.UUID, ref: str, *, actor: str | None = None) -> None:
        """Vectors, then rows, then stored files; each step is idempotent, so a retry after a
        crash finishes the job. Audited as ``kb.delete`` by ``actor`` (a principal's subject)."""
        kb = await self.repository.get_kb(tenant_id, ref)
        if self._audit is not None:
            await self._audit.record_audit(
                AuditEvent(
                    "kb.delete", "success", tenant_id, actor, f"kb:{kb.id}", {"name": kb.name}
                )
            )
        await self._vectors.delete(self.space(kb), tenant_id, kb.id)
        await self.repository.delete_kb(tenant_id, kb.id)
        await self._blobs.delete_prefix(f"tenants/{tenant_id}/kbs/{kb.id}/")
        await self._blobs.delete_prefix(f"runs/{tenant_id}/{kb.id}/")
        await self._events.publish(
            DomainEvent(
                type="kb.changed",
                tenant_id=str(tenant_id),
                kb_id=str(kb.id),
                detail={"deleted": True, "name": kb.name},
            )
        )
