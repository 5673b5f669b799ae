"""Reacting to the documents bucket: an uploaded object is ingested, a removed one deleted."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.db.kb_repository import KbRepository
from shared.errors import NotFound
from shared.ingestion.s3_events import ObjectChange, parse_s3_event
from shared.ingestion.service import IngestionService, StoredObject
from shared.kb.service import KbService

log = logging.getLogger(__name__)


@dataclass
class StorageEventOutcome:
    ingested: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)  # their saga runs on: Step Functions
    failed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


async def handle_storage_event(
    event: Mapping[str, Any],
    *,
    kbs: KbService,
    repository: KbRepository,
    ingestion: IngestionService,
) -> StorageEventOutcome:
    outcome = StorageEventOutcome()
    batches: dict[tuple[uuid.UUID, uuid.UUID], list[ObjectChange]] = defaultdict(list)
    for change in parse_s3_event(event):
        try:
            tenant_id, kb_id = uuid.UUID(change.tenant), uuid.UUID(change.kb)
            await kbs.get(tenant_id, str(kb_id))
        except (ValueError, NotFound):
            log.warning("object for an unknown tenant or KB skipped", extra={"key": change.key})
            outcome.skipped.append(change.key)
            continue
        if change.kind == "removed":
            document = await repository.find_document(tenant_id, kb_id, change.name)
            if document is not None:
                await ingestion.delete_document(document)
                outcome.deleted.append(change.name)
            continue
        batches[(tenant_id, kb_id)].append(change)
    for (tenant_id, kb_id), changes in batches.items():
        objects = [StoredObject(c.name, c.key, c.size or 0) for c in changes]
        result = await ingestion.ingest_stored(tenant_id, kb_id, objects)
        if result.run is not None and result.run.status == "running":
            outcome.started.extend(o.name for o in objects if o.name not in result.unchanged)
            outcome.ingested.extend(result.unchanged)
            continue
        failed = {f["name"] for f in result.failures}
        if result.run is not None and result.run.status != "succeeded":
            failed |= {o.name for o in objects}
        outcome.failed.extend(sorted(failed))
        outcome.ingested.extend(o.name for o in objects if o.name not in failed)
    return outcome
