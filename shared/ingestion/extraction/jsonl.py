"""JSON Lines corpora (BEIR format): each line ``{"_id", "title", "text"}`` is a document."""

from __future__ import annotations

import json
from typing import Any

from shared.errors import InvalidInput
from shared.ingestion.documents import ExtractedDocument, ExtractedSection
from shared.ingestion.extraction.base import ExtractionLimits, empty_document
from shared.ingestion.extraction.decode import decode_text, normalize_text
from shared.ingestion.extraction.detect import Kind
from shared.ports.ocr import OcrEngine


def extract_jsonl(
    data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
) -> list[ExtractedDocument]:
    documents: list[ExtractedDocument] = []
    seen: set[str] = set()
    for number, line in enumerate(decode_text(data).split("\n"), start=1):
        if not line.strip():
            continue
        doc_id, title, text = _record(line, number)
        if doc_id in seen:
            raise _bad_line(number, f'"_id" {doc_id!r} appears twice')
        seen.add(doc_id)
        # Some corpora hold records with a title and no text: the title is then the text. A record
        # with neither has nothing to index and is skipped.
        content = text or title
        if content:
            section = ExtractedSection(content, heading=title or None)
            documents.append(
                ExtractedDocument(doc_id, title or doc_id, Kind.JSONL.value, [section])
            )
    if not documents:
        raise empty_document()
    return documents


def _record(line: str, number: int) -> tuple[str, str, str]:
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad_line(number, f"is not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise _bad_line(number, "is not a JSON object")
    doc_id = record.get("_id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise _bad_line(number, 'has no "_id" string')
    title, text = record.get("title", ""), record.get("text")
    if not isinstance(title, str) or not isinstance(text, str):
        raise _bad_line(number, 'needs a string "text" (and "title", if present)')
    return doc_id.strip(), normalize_text(title).strip(), normalize_text(text).strip()


def _bad_line(number: int, problem: str) -> InvalidInput:
    return InvalidInput(f"line {number} {problem}", code="invalid_jsonl", details={"line": number})
