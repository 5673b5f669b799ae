"""Plain text, Markdown, JSON Lines, decoding and format detection."""

from __future__ import annotations

import pytest

from shared.errors import QuarryError
from shared.ingestion.extraction import Kind, detect_kind, extract
from tests.fixtures.documents import LIMITS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Grüße aus Köln".encode(), "Grüße aus Köln"),
        (b"\xef\xbb\xbfWith a BOM", "With a BOM"),
        ("Grüße aus Köln, schöne Straße".encode("cp1252"), "Grüße aus Köln, schöne Straße"),
        ("UTF-16 text é".encode("utf-16"), "UTF-16 text é"),
        (b"line one\r\nline two\rline three", "line one\nline two\nline three"),
        (b"bell\x07 and \x1b escape", "bell and  escape"),
    ],
)
def test_text_is_decoded(data: bytes, expected: str) -> None:
    [doc] = extract(data, "notes.txt", "text/plain", LIMITS, None)
    assert doc.text == expected
    assert doc.title == "notes"
    assert doc.sections[0].page is None


def test_invalid_utf8_never_crashes() -> None:
    [doc] = extract(b"ok \xff\xfe\xfd bytes \xc3", "junk.txt", None, LIMITS, None)
    assert doc.text.startswith("ok")


MARKDOWN = b"""---
title: "Field Guide"
---
Preface text before any heading.

# Intro
Why quarries matter.

## Setup
Install the tools:

```bash
# a comment, not a heading

make install
```
## Usage

### Daily
Run it daily.

Second paragraph.

Rock Types
==========
Granite and marble.
"""


def test_markdown_sections_follow_headings() -> None:
    [doc] = extract(MARKDOWN, "guide.md", None, LIMITS, None)

    assert doc.title == "Field Guide"
    assert doc.media_type == "text/markdown"
    headings = [section.heading for section in doc.sections]
    assert headings == [None, "Intro", "Intro > Setup", "Intro > Usage > Daily", "Rock Types"]
    setup = doc.sections[2].text
    assert "# a comment, not a heading\n\nmake install" in setup
    # "Usage" has no text of its own: its line leads the next section instead of standing alone.
    assert doc.sections[3].text == "Usage\n\nDaily\n\nRun it daily.\n\nSecond paragraph."
    assert doc.sections[4].text == "Rock Types\n\nGranite and marble."


def test_markdown_title_falls_back_to_first_heading_then_name() -> None:
    [with_heading] = extract(b"# Real Title\n\nBody.", "x.md", None, LIMITS, None)
    [without] = extract(b"Just body.", "plain-notes.markdown", None, LIMITS, None)
    assert (with_heading.title, without.title) == ("Real Title", "plain-notes")


def test_jsonl_records_are_documents_named_by_id() -> None:
    data = (
        b'{"_id": "doc-1", "title": "Granite", "text": "Granite is an igneous rock."}\n'
        b"\n"
        b'{"_id": 42, "text": "Marble is metamorphic."}\n'
        b'{"_id": "doc-3", "title": "Title only", "text": ""}\n'
        b'{"_id": "doc-4", "title": "", "text": "   "}\n'
    )
    docs = extract(data, "corpus.jsonl", None, LIMITS, None)

    assert [(d.name, d.title, d.text) for d in docs] == [
        ("doc-1", "Granite", "Granite is an igneous rock."),
        ("42", "42", "Marble is metamorphic."),
        ("doc-3", "Title only", "Title only"),
    ]
    assert docs[0].sections[0].heading == "Granite"
    assert all(d.media_type == "application/jsonl" for d in docs)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"title": "no id", "text": "x"}', '"_id"'),
        (b'{"_id": "a", "title": 3, "text": "x"}', '"text"'),
        (b'{"_id": "a"}', '"text"'),
        (b'"just a string"', "JSON object"),
        (b'{"_id": "dup", "text": "x"}', "twice"),
    ],
)
def test_jsonl_bad_records_name_their_line(line: bytes, problem: str) -> None:
    data = b'{"_id": "dup", "text": "first"}\n' + line + b"\n"
    with pytest.raises(QuarryError) as raised:
        extract(data, "corpus.ndjson", None, LIMITS, None)
    assert raised.value.code == "invalid_jsonl"
    assert raised.value.details == {"line": 2}
    assert problem in raised.value.message


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "kind"),
    [
        (b"# Title", "README.md", None, Kind.MARKDOWN),
        (b"# Title", "upload", "text/markdown; charset=utf-8", Kind.MARKDOWN),
        (b"plain", "upload", "application/octet-stream", Kind.TXT),
        (b"  <!DOCTYPE html><html></html>", "upload", None, Kind.HTML),
        (b"<html><body>x</body></html>", "page.txt", None, Kind.TXT),
        (b"%PDF-1.7\n...", "upload", None, Kind.PDF),
        (b"\x89PNG\r\n\x1a\n....", "scan", "image/png", Kind.PNG),
        (b"\xff\xd8\xff\xe0....", "photo.JPG", None, Kind.JPEG),
        (b"II*\x00....", "fax.tif", "image/tiff", Kind.TIFF),
        (b"junk first %PDF-1.4\n...", "late-header.pdf", None, Kind.PDF),
    ],
)
def test_detect_kind(data: bytes, filename: str, content_type: str | None, kind: Kind) -> None:
    assert detect_kind(data, filename, content_type) == kind


def test_pdf_header_quoted_in_text_does_not_make_a_pdf() -> None:
    assert detect_kind(b"The %PDF-1.4 header starts a PDF.", "notes.txt", None) == Kind.TXT
