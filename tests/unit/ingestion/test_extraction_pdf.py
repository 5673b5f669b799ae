from __future__ import annotations

import io

import pytest
from pypdf import PdfReader, PdfWriter

from shared.adapters.rapidocr_ocr import RapidOcrEngine
from shared.ingestion.extraction import extract
from shared.ports.ocr import OcrLine
from tests.fixtures.documents import (
    LIMITS,
    FakeOcr,
    pdf_with_scanned_page,
    text_image,
    text_pdf,
)

pytestmark = pytest.mark.unit


def test_text_pdf_has_one_section_per_page_and_no_ocr() -> None:
    data = text_pdf(
        ["The first page talks about granite quarries.", "The second page covers marble."],
        title="Stone Handbook",
    )
    ocr = FakeOcr([])

    [doc] = extract(data, "stone.pdf", "application/pdf", LIMITS, ocr)

    assert doc.title == "Stone Handbook"
    assert doc.media_type == "application/pdf"
    assert [(s.page, s.text) for s in doc.sections] == [
        (1, "The first page talks about granite quarries."),
        (2, "The second page covers marble."),
    ]
    assert doc.ocr_pages == 0
    assert ocr.calls == 0


def test_blank_page_is_skipped_without_ocr() -> None:
    data = text_pdf(["Only this page has enough text to count.", ""])
    ocr = FakeOcr([])

    [doc] = extract(data, "report.pdf", None, LIMITS, ocr)

    assert [s.page for s in doc.sections] == [1]
    assert doc.title == "report"
    assert ocr.calls == 0


def test_scanned_page_is_rendered_and_read_by_the_real_engine(ocr_engine: RapidOcrEngine) -> None:
    scan = text_image(["Scanned invoice number 4711", "was paid in full on Monday."], width=900)
    data = pdf_with_scanned_page("This first page has a proper text layer to read.", scan)

    [doc] = extract(data, "mixed.pdf", None, LIMITS, ocr_engine)

    assert doc.ocr_pages == 1
    assert [s.page for s in doc.sections] == [1, 2]
    assert doc.sections[0].text == "This first page has a proper text layer to read."
    assert "Scanned invoice number 4711 was paid in full on Monday." in doc.sections[1].text


def test_pdf_encrypted_with_an_empty_password_opens() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf(["Permissions only, no secret."]))))
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)

    [doc] = extract(buffer.getvalue(), "locked.pdf", None, LIMITS, None)

    assert doc.text == "Permissions only, no secret."


def test_scan_in_a_pdf_encrypted_with_an_empty_password_is_read() -> None:
    scan = io.BytesIO()
    text_image(["Scanned"], width=400).save(scan, "PDF")
    writer = PdfWriter(clone_from=PdfReader(scan))
    writer.encrypt(user_password="", owner_password="owner-secret", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    ocr = FakeOcr([OcrLine("Recognised words", (0, 0, 100, 20), 0.9)])

    [doc] = extract(buffer.getvalue(), "scan.pdf", None, LIMITS, ocr)

    assert (doc.text, doc.ocr_pages, ocr.calls) == ("Recognised words", 1, 1)
