"""S3 object changes from the two shapes S3 reports them in.

(a) A direct S3 notification (to Lambda, SQS or SNS): ``{"Records": [{"eventSource": "aws:s3",
"eventName": "ObjectCreated:Put", "s3": {...}}]}``. Its object key is URL-encoded the
``application/x-www-form-urlencoded`` way: a space arrives as ``+`` and a real ``+`` as ``%2B``.
(b) An EventBridge event: ``{"source": "aws.s3", "detail-type": "Object Created", "detail":
{...}}``, whose key is not encoded.

Documents live under ``tenants/{tenant}/kbs/{kb}/{name}`` (``object_key``); a change to any other
key is skipped with a warning, since the bucket may hold other things and one stray object must
not fail a whole batch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from shared.errors import InvalidInput
from shared.ports.blob_store import validate_key

log = logging.getLogger(__name__)

ChangeKind = Literal["created", "removed"]

# Tenant and knowledge-base ids are UUIDs in Quarry; slugs are accepted too.
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_EVENTBRIDGE_KINDS: dict[str, ChangeKind] = {
    "Object Created": "created",
    "Object Deleted": "removed",
}


@dataclass(frozen=True)
class ObjectChange:
    kind: ChangeKind
    bucket: str
    key: str  # decoded: the key to pass back to S3
    tenant: str
    kb: str
    name: str  # the document's name: everything after the kb, slashes included
    size: int | None  # bytes; None for a removal
    etag: str | None  # without quotes; None for a removal


def object_key(tenant: str, kb: str, name: str) -> str:
    """The blob key of document ``name`` in knowledge base ``kb`` of ``tenant``."""
    for label, value in (("tenant", tenant), ("kb", kb)):
        if not _ID_PATTERN.fullmatch(value):
            raise InvalidInput(
                f"{label} id {value!r} is not a valid key segment",
                code="invalid_key",
                details={label: value},
            )
    return validate_key(f"tenants/{tenant}/kbs/{kb}/{name}")


def split_object_key(key: str) -> tuple[str, str, str] | None:
    """``(tenant, kb, name)`` of a key built by ``object_key``; None for any other key."""
    parts = key.split("/", 4)
    if len(parts) != 5 or parts[0] != "tenants" or parts[2] != "kbs":
        return None
    tenant, kb, name = parts[1], parts[3], parts[4]
    try:
        object_key(tenant, kb, name)
    except InvalidInput:
        return None
    return tenant, kb, name


def parse_s3_event(event: Mapping[str, Any]) -> list[ObjectChange]:
    """The document changes in a direct S3 notification or an EventBridge S3 event.

    Raises ``InvalidInput`` (``unsupported_event``) for any other shape.
    """
    records = event.get("Records")
    if isinstance(records, list):
        changes = (_from_record(record) for record in records)
        return [change for change in changes if change is not None]
    if event.get("source") == "aws.s3" and "detail-type" in event:
        change = _from_eventbridge(event)
        return [change] if change is not None else []
    if event.get("Event") == "s3:TestEvent":
        # S3 sends this once when a notification is configured; there is no object in it.
        return []
    raise _unsupported("neither an S3 notification nor an EventBridge S3 event")


def _from_record(record: Any) -> ObjectChange | None:
    if not isinstance(record, Mapping) or record.get("eventSource") != "aws:s3":
        raise _unsupported("a record that is not from S3")
    event_name = str(record.get("eventName", ""))
    kind: ChangeKind
    if event_name.startswith("ObjectCreated:"):
        kind = "created"
    elif event_name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        kind = "removed"
    else:
        log.info("ignoring S3 event %s", event_name, extra={"s3_event": event_name})
        return None
    s3 = _object(record, "s3")
    bucket, obj = _text(_object(s3, "bucket"), "name"), _object(s3, "object")
    raw_key = _text(obj, "key")
    try:
        key = unquote_plus(raw_key, errors="strict")
    except UnicodeDecodeError:
        _warn_skipped(bucket, raw_key, "its URL-encoding is not UTF-8")
        return None
    return _change(kind, bucket, key, obj.get("size"), obj.get("eTag"))


def _from_eventbridge(event: Mapping[str, Any]) -> ObjectChange | None:
    detail_type = str(event["detail-type"])
    kind = _EVENTBRIDGE_KINDS.get(detail_type)
    if kind is None:
        log.info("ignoring S3 event %s", detail_type, extra={"s3_event": detail_type})
        return None
    detail = _object(event, "detail")
    bucket, obj = _text(_object(detail, "bucket"), "name"), _object(detail, "object")
    return _change(kind, bucket, _text(obj, "key"), obj.get("size"), obj.get("etag"))


def _change(kind: ChangeKind, bucket: str, key: str, size: Any, etag: Any) -> ObjectChange | None:
    parts = split_object_key(key)
    if parts is None:
        _warn_skipped(bucket, key, "it is not under tenants/{tenant}/kbs/{kb}/")
        return None
    tenant, kb, name = parts
    # A removal's etag (EventBridge sends one) is the delete marker's, not the document's.
    removed = kind == "removed"
    return ObjectChange(
        kind=kind,
        bucket=bucket,
        key=key,
        tenant=tenant,
        kb=kb,
        name=name,
        size=None if removed else _size(size),
        etag=etag.strip('"') if isinstance(etag, str) and etag and not removed else None,
    )


def _warn_skipped(bucket: str, key: str, why: str) -> None:
    log.warning("skipping S3 object: %s", why, extra={"bucket": bucket, "key": key})


def _size(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _object(container: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = container.get(name)
    if not isinstance(value, Mapping):
        raise _unsupported(f"no {name!r} object in the event")
    return value


def _text(container: Mapping[str, Any], name: str) -> str:
    value = container.get(name)
    if not isinstance(value, str) or not value:
        raise _unsupported(f"no {name!r} text in the event")
    return value


def _unsupported(why: str) -> InvalidInput:
    return InvalidInput(f"unsupported event: {why}", code="unsupported_event")
