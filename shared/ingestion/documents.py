"""What extraction produces and chunking consumes.

A document is a list of sections: a PDF page, a Markdown/HTML/DOCX section under one heading, an
OCR'd image. ``ExtractedDocument.text`` joins them with a blank line, and every character offset in
Quarry (``Chunk.char_start``/``char_end``) points into that string.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

SECTION_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class ExtractedSection:
    text: str
    page: int | None = None
    # The heading path of the section, e.g. "Intro > Setup"; None before the first heading.
    heading: str | None = None


@dataclass(frozen=True)
class ExtractedDocument:
    name: str
    title: str
    media_type: str
    sections: list[ExtractedSection]
    ocr_pages: int = 0

    @cached_property
    def text(self) -> str:
        return SECTION_SEPARATOR.join(section.text for section in self.sections)

    @cached_property
    def section_starts(self) -> list[int]:
        """The offset of each section's first character in ``text``."""
        starts: list[int] = []
        position = 0
        for section in self.sections:
            starts.append(position)
            position += len(section.text) + len(SECTION_SEPARATOR)
        return starts


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    char_start: int
    char_end: int
    page: int | None
    section: str | None
    token_count: int
