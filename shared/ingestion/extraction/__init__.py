"""Uploaded bytes to ``ExtractedDocument``s: one extractor per format behind ``extract``."""

from __future__ import annotations

from shared.errors import PayloadTooLarge
from shared.ingestion.documents import ExtractedDocument
from shared.ingestion.extraction.base import ExtractionLimits, Extractor, empty_document
from shared.ingestion.extraction.detect import Kind, detect_kind
from shared.ingestion.extraction.html_page import extract_html
from shared.ingestion.extraction.images import extract_image
from shared.ingestion.extraction.jsonl import extract_jsonl
from shared.ingestion.extraction.pdf import extract_pdf
from shared.ingestion.extraction.plain import extract_markdown, extract_txt
from shared.ingestion.extraction.word import extract_docx
from shared.ports.ocr import OcrEngine

__all__ = ["ExtractionLimits", "Extractor", "Kind", "detect_kind", "extract"]

EXTRACTORS: dict[Kind, Extractor] = {
    Kind.TXT: extract_txt,
    Kind.MARKDOWN: extract_markdown,
    Kind.HTML: extract_html,
    Kind.JSONL: extract_jsonl,
    Kind.PDF: extract_pdf,
    Kind.DOCX: extract_docx,
    Kind.PNG: extract_image,
    Kind.JPEG: extract_image,
    Kind.TIFF: extract_image,
}


def extract(
    data: bytes,
    filename: str,
    content_type: str | None,
    limits: ExtractionLimits,
    ocr: OcrEngine | None,
) -> list[ExtractedDocument]:
    """The documents in one upload: one for most formats, one per record for JSON Lines.

    Raises ``QuarryError``s with specific codes: ``file_too_large``, ``empty_document``,
    ``unsupported_type``, ``type_mismatch``, ``corrupt_file``, ``too_many_pages``,
    ``image_too_large``, ``encrypted_pdf``, ``no_text``, ``ocr_unavailable``, ``invalid_jsonl``.
    """
    if len(data) > limits.max_file_bytes:
        raise PayloadTooLarge(
            f"the file is {len(data)} bytes; at most {limits.max_file_bytes} are accepted",
            code="file_too_large",
            details={"bytes": len(data), "max_bytes": limits.max_file_bytes},
        )
    if not data or data.isspace():
        raise empty_document()
    kind = detect_kind(data, filename, content_type)
    return EXTRACTORS[kind](data, filename, limits, ocr)
