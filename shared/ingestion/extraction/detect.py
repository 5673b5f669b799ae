"""Which format an upload is: its bytes decide, its name and content type break the ties.

Binary formats carry a signature. When the signature names one format and the name or content type
another, the upload is refused (``type_mismatch``): a ZIP archive named ``report.pdf`` is no PDF.
Text formats have no signature, so for them the declared type decides.
"""

from __future__ import annotations

import io
import zipfile
from enum import StrEnum
from pathlib import PurePosixPath

from shared.errors import UnsupportedMediaType
from shared.ingestion.extraction.base import corrupt_file


class Kind(StrEnum):
    TXT = "text/plain"
    MARKDOWN = "text/markdown"
    HTML = "text/html"
    JSONL = "application/jsonl"
    PDF = "application/pdf"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    PNG = "image/png"
    JPEG = "image/jpeg"
    TIFF = "image/tiff"


_TEXT_KINDS = {Kind.TXT, Kind.MARKDOWN, Kind.HTML, Kind.JSONL}
_BY_EXTENSION = {
    ".txt": Kind.TXT,
    ".text": Kind.TXT,
    ".md": Kind.MARKDOWN,
    ".markdown": Kind.MARKDOWN,
    ".html": Kind.HTML,
    ".htm": Kind.HTML,
    ".xhtml": Kind.HTML,
    ".jsonl": Kind.JSONL,
    ".ndjson": Kind.JSONL,
    ".pdf": Kind.PDF,
    ".docx": Kind.DOCX,
    ".png": Kind.PNG,
    ".jpg": Kind.JPEG,
    ".jpeg": Kind.JPEG,
    ".tif": Kind.TIFF,
    ".tiff": Kind.TIFF,
}
_BY_CONTENT_TYPE = {kind.value: kind for kind in Kind} | {
    "text/x-markdown": Kind.MARKDOWN,
    "application/xhtml+xml": Kind.HTML,
    "application/x-ndjson": Kind.JSONL,
    "application/x-jsonlines": Kind.JSONL,
    "image/jpg": Kind.JPEG,
}
# Signatures of formats Quarry does not read, so that they are named in the refusal.
# Only signatures that plain text cannot start with.
_OTHER_SIGNATURES = {
    b"GIF87a": "gif",
    b"GIF89a": "gif",
    b"\x1f\x8b": "gzip",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!\x1a\x07": "rar",
    b"\xd0\xcf\x11\xe0": "ole2",  # .doc, .xls, .ppt
    b"\x7fELF": "elf",
}
_UTF_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def detect_kind(data: bytes, filename: str, content_type: str | None) -> Kind:
    declared = _declared(filename, content_type)
    sniffed = _sniff(data)
    # Readers accept up to 1 KiB of junk before the PDF header (PDF 1.7, annex H); only trust such
    # a late header when the upload says it is a PDF, since text may quote "%PDF-".
    if sniffed is None and declared == Kind.PDF and b"%PDF-" in data[:1024]:
        return Kind.PDF
    if sniffed == "zip" and declared == Kind.DOCX:
        raise corrupt_file("docx")
    if isinstance(sniffed, Kind):
        if declared is None or declared == sniffed:
            return sniffed
        raise _mismatch(declared, sniffed.value)
    if sniffed is not None:  # a known format Quarry does not read
        if declared is None:
            raise UnsupportedMediaType(
                f"{sniffed} files are not supported", details={"detected": sniffed}
            )
        raise _mismatch(declared, sniffed)
    if declared is not None and declared not in _TEXT_KINDS:
        raise corrupt_file(declared.name.lower())  # declared binary, but no signature at all
    if _looks_binary(data):
        raise UnsupportedMediaType("the file is binary, not text", details={"detected": "binary"})
    return declared or _guess_text_kind(data)


def _declared(filename: str, content_type: str | None) -> Kind | None:
    by_extension = _BY_EXTENSION.get(PurePosixPath(filename.lower()).suffix)
    if by_extension is not None:
        return by_extension
    media_type = (content_type or "").split(";")[0].strip().lower()
    return _BY_CONTENT_TYPE.get(media_type)


def _sniff(data: bytes) -> Kind | str | None:
    if data.startswith(b"%PDF-"):
        return Kind.PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Kind.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return Kind.JPEG
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return Kind.TIFF
    if data.startswith(b"PK\x03\x04"):
        return Kind.DOCX if _is_docx(data) else "zip"
    for signature, name in _OTHER_SIGNATURES.items():
        if data.startswith(signature):
            return name
    return None


def _is_docx(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _looks_binary(data: bytes) -> bool:
    """NUL bytes do not occur in text, except in UTF-16/32 text, which starts with a BOM."""
    return b"\x00" in data[:8192] and not data.startswith(_UTF_BOMS)


def _guess_text_kind(data: bytes) -> Kind:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return Kind.HTML
    return Kind.TXT


def _mismatch(declared: Kind, detected: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"the file is declared as {declared.value} but its content is {detected}",
        code="type_mismatch",
        details={"declared": declared.value, "detected": detected},
    )
