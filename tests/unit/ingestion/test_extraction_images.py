from __future__ import annotations

import pytest
from PIL import Image

from shared.adapters.rapidocr_ocr import RapidOcrEngine
from shared.ingestion.extraction import extract
from shared.ports.ocr import OcrLine
from tests.fixtures.documents import LIMITS, FakeOcr, image_bytes, text_image

pytestmark = pytest.mark.unit


def test_scanned_png_is_read_by_the_real_engine(ocr_engine: RapidOcrEngine) -> None:
    scan = text_image(
        [
            "Quarry reads scanned pages.",
            "The quick brown fox jumps over",
            "the lazy dog near the river.",
            "",
            "A second paragraph follows here.",
        ],
        min_height=736,
    )
    [doc] = extract(image_bytes(scan), "scan.png", "image/png", LIMITS, ocr_engine)

    assert doc.media_type == "image/png"
    assert doc.ocr_pages == 1
    assert doc.title == "scan"
    text = doc.text
    assert "quick brown fox jumps over the lazy dog" in text
    assert "Quarry reads scanned pages." in text
    first, second = text.split("\n\n")
    assert "second paragraph" in second
    assert "second" not in first


def test_multi_frame_tiff_is_one_page_per_frame() -> None:
    frames = [text_image(["page one"], width=300), text_image(["page two"], width=300)]
    data = image_bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    ocr = FakeOcr([OcrLine("Some words", (10, 10, 200, 40), 0.99)])

    [doc] = extract(data, "fax.tiff", None, LIMITS, ocr)

    assert doc.media_type == "image/tiff"
    assert [section.page for section in doc.sections] == [1, 2]
    assert doc.ocr_pages == 2
    assert ocr.calls == 2


def test_jpeg_with_exif_rotation_is_turned_upright() -> None:
    seen: list[tuple[int, int]] = []

    class SizeRecorder(FakeOcr):
        def recognize(self, image: Image.Image) -> list[OcrLine]:
            seen.append(image.size)
            return super().recognize(image)

    exif = text_image(["x"], width=300).getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    data = image_bytes(text_image(["x"], width=300), "JPEG", exif=exif)

    extract(data, "photo.jpg", None, LIMITS, SizeRecorder([OcrLine("Text", (0, 0, 9, 9), 1.0)]))

    width, height = text_image(["x"], width=300).size
    assert seen == [(height, width)]
