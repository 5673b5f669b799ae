"""Run artifacts of the ingestion saga: extracted documents as JSON, and the small pure helpers
the steps share to describe them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from shared.ingestion.documents import ExtractedDocument, ExtractedSection


def is_jsonl(item: dict[str, Any]) -> bool:
    name = str(item["name"]).lower()
    return name.endswith((".jsonl", ".ndjson")) or "jsonl" in str(item.get("media_type") or "")


def text_hash(text: str, title: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


def page_count(doc: ExtractedDocument) -> int | None:
    pages = {s.page for s in doc.sections if s.page is not None}
    return max(pages) if pages else None


def document_to_json(doc: ExtractedDocument) -> dict[str, Any]:
    # PostgreSQL text cannot hold NUL characters, which do turn up in real files.
    return {
        "name": doc.name,
        "title": doc.title.replace("\x00", ""),
        "media_type": doc.media_type,
        "ocr_pages": doc.ocr_pages,
        "sections": [{**asdict(s), "text": s.text.replace("\x00", "")} for s in doc.sections],
    }


def document_from_json(record: dict[str, Any]) -> ExtractedDocument:
    return ExtractedDocument(
        name=record["name"],
        title=record["title"],
        media_type=record["media_type"],
        sections=[ExtractedSection(**s) for s in record["sections"]],
        ocr_pages=record.get("ocr_pages", 0),
    )


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
