"""DOCX via python-docx: paragraphs and tables in order, sections by heading style."""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from shared.errors import PayloadTooLarge
from shared.ingestion.documents import ExtractedDocument
from shared.ingestion.extraction.base import ExtractionLimits, corrupt_file, no_text
from shared.ingestion.extraction.detect import Kind
from shared.ingestion.extraction.outline import Outline
from shared.ingestion.extraction.plain import title_from_name
from shared.ports.ocr import OcrEngine

# python-docx inflates every part of the archive into memory, so the inflated total is bounded
# too: at most this many times the upload limit (XML compresses about 10:1).
_MAX_EXPANSION = 10
# "Heading 2" by name; "Heading2" is the style id, which Word keeps in English in every language.
_HEADING = re.compile(r"^heading ?([1-9])$", re.IGNORECASE)


def extract_docx(
    data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
) -> list[ExtractedDocument]:
    _check_inflated_size(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = list(document.iter_inner_content())
        core_title = (document.core_properties.title or "").strip()
    except Exception as exc:  # python-docx and lxml raise many types on malformed packages
        raise corrupt_file("docx") from exc
    outline = Outline()
    style_title = ""
    for block in blocks:
        if isinstance(block, Table):
            outline.paragraph(_table_text(block))
            continue
        level, style_name = _heading_level(block)
        if level:
            outline.heading(level, block.text)
        else:
            outline.paragraph(block.text)
            if style_name == "Title" and not style_title:
                style_title = block.text.strip()
    sections = outline.sections()
    if not sections:
        raise no_text("docx")
    title = core_title or style_title or outline.first_heading or title_from_name(name)
    return [ExtractedDocument(name, title, Kind.DOCX.value, sections)]


def _check_inflated_size(data: bytes, limits: ExtractionLimits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise corrupt_file("docx") from exc
    if inflated > _MAX_EXPANSION * limits.max_file_bytes:
        raise PayloadTooLarge(
            f"the document inflates to {inflated} bytes",
            code="file_too_large",
            details={"inflated_bytes": inflated},
        )


def _heading_level(paragraph: Paragraph) -> tuple[int, str]:
    style = paragraph.style
    if style is None:
        return 0, ""
    name = style.name or ""
    match = _HEADING.match(name) or _HEADING.match(style.style_id or "")
    return (int(match.group(1)) if match else 0), name


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell is not previous:  # a merged cell is repeated once per grid column it spans
                cells.append(" ".join(cell.text.split()))
            previous = cell
        if any(cells):
            rows.append(" | ".join(cells).rstrip())
    return "\n".join(rows)
