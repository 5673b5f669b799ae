"""What every extractor shares: the limits it enforces, its interface, and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from shared.ingestion.documents import ExtractedDocument
from shared.ports.ocr import OcrEngine


@dataclass(frozen=True)
class ExtractionLimits:
    """Built by the caller from ``IngestionSettings``; extraction never reads settings itself."""

    max_file_bytes: int
    max_pdf_pages: int  # also the most frames read from one TIFF
    max_image_pixels: int  # per image or rendered page


class Extractor(Protocol):
    def __call__(
        self, data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
    ) -> list[ExtractedDocument]: ...


def corrupt_file(kind: str) -> InvalidInput:
    return InvalidInput(
        f"the file is damaged or is not a valid {kind} file",
        code="corrupt_file",
        details={"type": kind},
    )


def empty_document() -> InvalidInput:
    return InvalidInput("the file is empty", code="empty_document")


def no_text(kind: str) -> InvalidInput:
    return InvalidInput(
        f"no text could be extracted from the {kind} file", code="no_text", details={"type": kind}
    )


def too_many_pages(pages: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the document has {pages} pages; at most {limit} are accepted",
        code="too_many_pages",
        details={"pages": pages, "max_pages": limit},
    )


def image_too_large(limit: int, size: tuple[int, int] | None = None) -> PayloadTooLarge:
    shape = f"{size[0]}x{size[1]} pixels" if size else "too large"
    return PayloadTooLarge(
        f"the image is {shape}; at most {limit} pixels are accepted",
        code="image_too_large",
        details={"max_pixels": limit} | ({"width": size[0], "height": size[1]} if size else {}),
    )


def ocr_unavailable() -> UnsupportedMediaType:
    # Refused rather than retried: the file needs OCR and this deployment has no OCR engine.
    return UnsupportedMediaType(
        "the file has no text layer and needs OCR, which is not available here",
        code="ocr_unavailable",
    )


def check_pixels(width: int, height: int, limits: ExtractionLimits) -> None:
    if width * height > limits.max_image_pixels:
        raise image_too_large(limits.max_image_pixels, (width, height))
