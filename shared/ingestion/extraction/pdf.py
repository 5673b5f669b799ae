"""PDF: the text layer of each page via pypdf, one section per page; OCR where it is missing."""

from __future__ import annotations

import io
import re

from pypdf import PasswordType, PdfReader

from shared.errors import InvalidInput
from shared.ingestion.documents import ExtractedDocument, ExtractedSection
from shared.ingestion.extraction.base import (
    ExtractionLimits,
    corrupt_file,
    no_text,
    too_many_pages,
)
from shared.ingestion.extraction.decode import normalize_text
from shared.ingestion.extraction.detect import Kind
from shared.ingestion.extraction.pdf_ocr import ocr_pdf_pages
from shared.ingestion.extraction.plain import title_from_name
from shared.ports.ocr import OcrEngine

# A page with fewer letters and digits than this in its text layer (a page number, a stray header)
# is treated as having none: if it holds images, it is a scan.
_MIN_USABLE_CHARS = 16
# Fonts without a Unicode map come out as U+FFFD or "(cid:N)": such a layer is junk, and the page
# is read by OCR whatever it holds.
_GARBLED = re.compile(r"\ufffd|\(cid:\d+\)")
_MAX_GARBLED_SHARE = 0.1


def extract_pdf(
    data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
) -> list[ExtractedDocument]:
    reader = _open(data)
    # pypdf raises a wide range of exception types on malformed files, hence the broad catches.
    try:
        page_count = len(reader.pages)
    except Exception as exc:
        raise corrupt_file("pdf") from exc
    if page_count > limits.max_pdf_pages:
        raise too_many_pages(page_count, limits.max_pdf_pages)
    texts = [_page_text(reader, index) for index in range(page_count)]
    garbled = {index for index, text in enumerate(texts) if _garbled(text)}
    sparse = [index for index, text in enumerate(texts) if _sparse(text) and index not in garbled]
    ocr_texts = ocr_pdf_pages(data, sorted(garbled), sparse, limits, ocr)
    sections = []
    for index, layer_text in enumerate(texts):
        text = ocr_texts.get(index) or ("" if index in garbled else layer_text)
        if text:
            sections.append(ExtractedSection(text, page=index + 1))
    if not sections:
        raise no_text("pdf")
    title = _metadata_title(reader) or title_from_name(name)
    return [ExtractedDocument(name, title, Kind.PDF.value, sections, ocr_pages=len(ocr_texts))]


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data))
        # Many PDFs are encrypted only to set permissions and open with the empty password.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise _encrypted()
    except InvalidInput:
        raise
    except NotImplementedError as exc:  # an encryption algorithm pypdf does not implement
        raise _encrypted() from exc
    except Exception as exc:
        raise corrupt_file("pdf") from exc
    return reader


def _encrypted() -> InvalidInput:
    return InvalidInput("the PDF is protected by a password", code="encrypted_pdf")


def _page_text(reader: PdfReader, index: int) -> str:
    try:
        text = reader.pages[index].extract_text()
    except Exception:
        return ""  # an unreadable text layer is no text layer: OCR may still read the page
    return normalize_text(text).strip()


def _sparse(text: str) -> bool:
    return sum(char.isalnum() for char in text) < _MIN_USABLE_CHARS


def _garbled(text: str) -> bool:
    garbled_chars = sum(len(match) for match in _GARBLED.findall(text))
    return garbled_chars > _MAX_GARBLED_SHARE * len(text)


def _metadata_title(reader: PdfReader) -> str:
    try:
        metadata = reader.metadata
        return str(metadata.title or "").strip() if metadata else ""
    except Exception:
        return ""
