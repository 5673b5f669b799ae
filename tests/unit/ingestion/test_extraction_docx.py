from __future__ import annotations

import io

import docx
import pytest

from shared.ingestion.extraction import extract
from tests.fixtures.documents import LIMITS

pytestmark = pytest.mark.unit


def _docx(*, core_title: str = "") -> bytes:
    document = docx.Document()
    document.core_properties.title = core_title
    document.add_paragraph("Quarry Operations Manual", style="Title")
    document.add_paragraph("Read this before visiting a site.")
    document.add_heading("Safety", level=1)
    document.add_paragraph("Wear a helmet at all times.")
    document.add_heading("Equipment", level=2)
    table = document.add_table(rows=2, cols=3)
    table.rows[0].cells[0].text = "Item"
    table.rows[0].cells[1].text = "Count"
    table.rows[1].cells[0].text = "Helmet"
    table.rows[1].cells[1].text = "12"
    merged = table.rows[0].cells[1].merge(table.rows[0].cells[2])
    merged.text = "Count"
    document.add_paragraph("Check the list daily.")
    document.add_heading("Blasting", level=1)
    document.add_paragraph("Only licensed staff may blast.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_sections_follow_heading_styles() -> None:
    [doc] = extract(_docx(), "manual.docx", None, LIMITS, None)

    assert doc.media_type.endswith("wordprocessingml.document")
    assert doc.title == "Quarry Operations Manual"
    assert [(s.heading, s.text) for s in doc.sections] == [
        (None, "Quarry Operations Manual\n\nRead this before visiting a site."),
        ("Safety", "Safety\n\nWear a helmet at all times."),
        (
            "Safety > Equipment",
            "Equipment\n\nItem | Count\nHelmet | 12 |\n\nCheck the list daily.",
        ),
        ("Blasting", "Blasting\n\nOnly licensed staff may blast."),
    ]


def test_docx_core_title_wins() -> None:
    [doc] = extract(_docx(core_title="Manual v2"), "manual.docx", None, LIMITS, None)
    assert doc.title == "Manual v2"
