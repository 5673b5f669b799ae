"""Every refusal carries its own machine-readable code."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import replace

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from shared.errors import QuarryError
from shared.ingestion.extraction import ExtractionLimits, extract
from shared.ports.ocr import OcrEngine, OcrLine
from tests.fixtures.documents import (
    LIMITS,
    FakeOcr,
    image_bytes,
    text_image,
    text_pdf,
)

pytestmark = pytest.mark.unit

OCR = FakeOcr([OcrLine("text", (0, 0, 10, 10), 0.99)])


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _png_claiming_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims another size: a decompression bomb's shape."""
    data = bytearray(image_bytes(Image.new("L", (1, 1))))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def _encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(["Top secret plans."]))))
    writer.encrypt(user_password="s3cret", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _scanned_pdf() -> bytes:
    buffer = io.BytesIO()
    text_image(["Scanned page"], width=400).save(buffer, "PDF")
    return buffer.getvalue()


def _tiff(frames: int) -> bytes:
    images = [Image.new("L", (20, 20), 255) for _ in range(frames)]
    return image_bytes(images[0], "TIFF", save_all=True, append_images=images[1:])


SMALL_IMAGES = replace(LIMITS, max_image_pixels=10_000)
TWO_PAGES = replace(LIMITS, max_pdf_pages=2)

CASES: list[tuple[str, bytes, str, ExtractionLimits, OcrEngine | None, str]] = [
    ("unsupported gif", b"GIF89a\x01\x00\x01\x00", "anim.gif", LIMITS, OCR, "unsupported_type"),
    ("unsupported binary", b"\x00\x01\x02binary", "blob.bin", LIMITS, OCR, "unsupported_type"),
    ("plain zip", _zip({"a.txt": b"hi"}), "archive.zip", LIMITS, OCR, "unsupported_type"),
    ("zip as pdf", _zip({"a.txt": b"hi"}), "report.pdf", LIMITS, OCR, "type_mismatch"),
    ("png as docx", image_bytes(Image.new("L", (5, 5))), "a.docx", LIMITS, OCR, "type_mismatch"),
    ("empty", b"", "empty.txt", LIMITS, OCR, "empty_document"),
    ("whitespace", b" \r\n\t\n", "blank.md", LIMITS, OCR, "empty_document"),
    ("bom only", b"\xef\xbb\xbf\n", "bom.txt", LIMITS, OCR, "empty_document"),
    (
        "jsonl without records",
        b'{"_id": "1", "text": ""}\n',
        "c.jsonl",
        LIMITS,
        OCR,
        "empty_document",
    ),
    ("corrupt pdf", b"%PDF-1.7\n garbage \x00\xff", "bad.pdf", LIMITS, OCR, "corrupt_file"),
    ("text named pdf", b"just some text", "fake.pdf", LIMITS, OCR, "corrupt_file"),
    (
        "corrupt docx",
        _zip({"word/document.xml": b"<not xml"}),
        "x.docx",
        LIMITS,
        OCR,
        "corrupt_file",
    ),
    ("zip named docx", _zip({"a.txt": b"hi"}), "x.docx", LIMITS, OCR, "corrupt_file"),
    ("corrupt png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "bad.png", LIMITS, OCR, "corrupt_file"),
    (
        "truncated png",
        image_bytes(text_image(["cut short"], width=300))[:400],
        "cut.png",
        LIMITS,
        OCR,
        "corrupt_file",
    ),
    (
        "too large",
        b"x" * 101,
        "big.txt",
        replace(LIMITS, max_file_bytes=100),
        OCR,
        "file_too_large",
    ),
    ("too many pages", text_pdf(["a", "b", "c"]), "long.pdf", TWO_PAGES, OCR, "too_many_pages"),
    ("too many frames", _tiff(3), "fax.tif", TWO_PAGES, OCR, "too_many_pages"),
    # 120 x 120 is over the 10,000-pixel limit but under PIL's own error threshold (twice the
    # limit), so Quarry's header check is what refuses it.
    (
        "image over limit",
        image_bytes(Image.new("L", (120, 120))),
        "big.png",
        SMALL_IMAGES,
        OCR,
        "image_too_large",
    ),
    ("bomb header", _png_claiming_size(50_000, 50_000), "bomb.png", LIMITS, OCR, "image_too_large"),
    ("page over limit", _scanned_pdf(), "scan.pdf", SMALL_IMAGES, OCR, "image_too_large"),
    (
        "html nav only",
        b"<html><body><nav><a href='/'>Home</a></nav><script>x()</script></body></html>",
        "nav.html",
        LIMITS,
        OCR,
        "no_text",
    ),
    ("encrypted", _encrypted_pdf(), "secret.pdf", LIMITS, OCR, "encrypted_pdf"),
    (
        "image without ocr",
        image_bytes(text_image(["hi"])),
        "a.png",
        LIMITS,
        None,
        "ocr_unavailable",
    ),
    ("scan without ocr", _scanned_pdf(), "scan.pdf", LIMITS, None, "ocr_unavailable"),
    ("bad jsonl", b'{"_id": "1", "text": "ok"}\n{oops\n', "c.jsonl", LIMITS, OCR, "invalid_jsonl"),
]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("data", "filename", "limits", "ocr", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_refusal_code(
    data: bytes, filename: str, limits: ExtractionLimits, ocr: OcrEngine | None, code: str
) -> None:
    with pytest.raises(QuarryError) as raised:
        extract(data, filename, None, limits, ocr)
    assert raised.value.code == code, raised.value.message


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_codes_map_to_http_statuses() -> None:
    statuses = {}
    for _, data, filename, limits, ocr, code in CASES:
        with pytest.raises(QuarryError) as raised:
            extract(data, filename, None, limits, ocr)
        statuses[code] = raised.value.status_code
    assert statuses == {
        "unsupported_type": 415,
        "type_mismatch": 415,
        "ocr_unavailable": 415,
        "empty_document": 422,
        "corrupt_file": 422,
        "no_text": 422,
        "encrypted_pdf": 422,
        "invalid_jsonl": 422,
        "file_too_large": 413,
        "too_many_pages": 413,
        "image_too_large": 413,
    }


def test_bad_jsonl_line_is_named() -> None:
    with pytest.raises(QuarryError) as raised:
        extract(b'{"_id": "1", "text": "ok"}\n\n[1, 2]\n', "c.jsonl", None, LIMITS, OCR)
    assert raised.value.details == {"line": 3}
    assert "line 3" in raised.value.message
