"""Images (PNG, JPEG, TIFF; each TIFF frame a page) through OCR."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageOps

from shared.ingestion.documents import ExtractedDocument, ExtractedSection
from shared.ingestion.extraction.base import (
    ExtractionLimits,
    check_pixels,
    corrupt_file,
    image_too_large,
    no_text,
    ocr_unavailable,
    too_many_pages,
)
from shared.ingestion.extraction.detect import Kind
from shared.ingestion.extraction.ocr_layout import ocr_text
from shared.ingestion.extraction.plain import title_from_name
from shared.ports.ocr import OcrEngine

# MPO is how cameras store JPEGs; its extra frames are previews, not pages.
_KINDS = {"PNG": Kind.PNG, "JPEG": Kind.JPEG, "MPO": Kind.JPEG, "TIFF": Kind.TIFF}


def ocr_image(image: Image.Image, ocr: OcrEngine) -> str:
    return ocr_text(ocr.recognize(image))


def extract_image(
    data: bytes, name: str, limits: ExtractionLimits, ocr: OcrEngine | None
) -> list[ExtractedDocument]:
    # PIL's own decompression-bomb guard, for any decoder path that allocates before we look. It
    # is process-wide; every caller passes the same configured limit.
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    with _decoding(limits):
        image = Image.open(io.BytesIO(data))
    with image:
        kind = _KINDS.get(image.format or "")
        if kind is None:
            raise corrupt_file("image")
        frames = getattr(image, "n_frames", 1) if kind == Kind.TIFF else 1
        if frames > limits.max_pdf_pages:
            raise too_many_pages(frames, limits.max_pdf_pages)
        # Image.open has read only the header: the size is known before any pixel is decoded.
        check_pixels(*image.size, limits)
        if ocr is None:
            raise ocr_unavailable()
        sections: list[ExtractedSection] = []
        for index in range(frames):
            with _decoding(limits):
                image.seek(index)
                check_pixels(*image.size, limits)
                # Photos of pages are often stored sideways with an EXIF rotation tag.
                page = ImageOps.exif_transpose(image).convert("RGB")
            # Outside ``_decoding``: an OCR failure is not a damaged file.
            text = ocr_image(page, ocr)
            if text:
                sections.append(ExtractedSection(text, index + 1 if frames > 1 else None))
    if not sections:
        raise no_text("image")
    title = title_from_name(name)
    return [ExtractedDocument(name, title, kind.value, sections, ocr_pages=frames)]


@contextmanager
def _decoding(limits: ExtractionLimits) -> Iterator[None]:
    """Turns what PIL raises for oversized, unreadable or truncated data into Quarry errors."""
    try:
        yield
    except Image.DecompressionBombError as exc:
        raise image_too_large(limits.max_image_pixels) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise corrupt_file("image") from exc
