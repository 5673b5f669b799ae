"""Builders for the ingestion tests: every fixture file is made here, none is checked in."""

from __future__ import annotations

import io
from pathlib import Path

from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from shared.ingestion.extraction import ExtractionLimits
from shared.ports.ocr import OcrLine

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LIMITS = ExtractionLimits(max_file_bytes=5_000_000, max_pdf_pages=20, max_image_pixels=20_000_000)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if FONT_PATH.exists():
        return ImageFont.truetype(str(FONT_PATH), size)
    return ImageFont.load_default(size)


def text_image(
    lines: list[str], *, size: int = 30, width: int = 760, min_height: int = 0
) -> Image.Image:
    """Black text on white, one line per entry (an empty entry leaves a blank line).

    RapidOCR's detector scales an image up until its short side is 736 px, so a wide, short strip
    costs more than a square page: ``min_height`` pads the page to keep the OCR tests quick.
    """
    line_height = int(size * 1.6)
    height = max(min_height, 60 + line_height * len(lines))
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((40, 30 + row * line_height), line, font=font(size), fill="black")
    return image


def image_bytes(image: Image.Image, image_format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def text_pdf(pages: list[str], *, title: str | None = None) -> bytes:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def pdf_with_scanned_page(text_page: str, scan: Image.Image) -> bytes:
    """Page 1 has a text layer; page 2 is only an image of text, as a scanner makes it."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, text_page)
    # A small page keeps the rendered image, and so the OCR time, small.
    pdf.add_page(format=(130, 20 + 110 * scan.height / scan.width))
    pdf.image(scan, x=10, y=10, w=110)
    return bytes(pdf.output())


class FakeOcr:
    """An ``OcrEngine`` that returns fixed lines and counts its calls."""

    def __init__(self, lines: list[OcrLine]) -> None:
        self.lines = lines
        self.calls = 0

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        self.calls += 1
        return self.lines
