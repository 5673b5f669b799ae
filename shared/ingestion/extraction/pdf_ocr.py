"""PDF pages without a usable text layer: rendered with PDFium and read by OCR."""

from __future__ import annotations

import threading

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from shared.ingestion.extraction.base import (
    ExtractionLimits,
    check_pixels,
    corrupt_file,
    ocr_unavailable,
)
from shared.ingestion.extraction.images import ocr_image
from shared.ports.ocr import OcrEngine

# PDFium is not thread-safe: every call into it, from any document, holds this lock.
_PDFIUM_LOCK = threading.Lock()
# RapidOCR shrinks larger images to 2000 px on the long side anyway; 300 dpi is enough for print.
_LONG_SIDE_PX = 2000
_MAX_SCALE = 300 / 72


def ocr_pdf_pages(
    data: bytes,
    always: list[int],
    if_images: list[int],
    limits: ExtractionLimits,
    ocr: OcrEngine | None,
) -> dict[int, str]:
    """The OCR text of pages (0-based): those in ``always``, and those in ``if_images`` that hold
    an image (a scan); a page with no text layer and no image is blank."""
    texts: dict[int, str] = {}
    if not always and not if_images:
        return texts
    forced = set(always)
    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise corrupt_file("pdf") from exc
    try:
        for index in sorted([*always, *if_images]):
            with _PDFIUM_LOCK:
                page = pdf[index]
                try:
                    if index not in forced and not _has_images(page):
                        continue
                    if ocr is None:
                        raise ocr_unavailable()
                    image = _render(page, limits)
                finally:
                    page.close()
            texts[index] = ocr_image(image, ocr)  # outside the lock: OCR is the slow part
    finally:
        with _PDFIUM_LOCK:
            pdf.close()
    return texts


def _has_images(page: pdfium.PdfPage) -> bool:
    objects = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])
    return next(objects, None) is not None


def _render(page: pdfium.PdfPage, limits: ExtractionLimits) -> Image.Image:
    width, height = page.get_size()
    scale = min(_MAX_SCALE, _LONG_SIDE_PX / max(width, height, 1.0))
    check_pixels(round(width * scale), round(height * scale), limits)
    image: Image.Image = page.render(scale=scale).to_pil()
    return image
