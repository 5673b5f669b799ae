"""Sections from a stream of headings and paragraphs (Markdown, HTML, DOCX)."""

from __future__ import annotations

from shared.ingestion.documents import SECTION_SEPARATOR, ExtractedSection

HEADING_PATH_SEPARATOR = " > "


class Outline:
    """Each heading starts a section whose ``heading`` is its path, e.g. "Intro > Setup".

    A heading with no text of its own before the next heading does not become a one-line section:
    its line goes into the next section's text, and its title into that section's path.
    """

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []
        self._blocks: list[str] = []
        self._has_body = False
        self._sections: list[ExtractedSection] = []
        self.first_heading: str | None = None

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        if self._has_body:
            self._flush()
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, text))
        self._blocks.append(text)
        if self.first_heading is None:
            self.first_heading = text

    def paragraph(self, text: str) -> None:
        text = text.strip()
        if text:
            self._blocks.append(text)
            self._has_body = True

    def sections(self) -> list[ExtractedSection]:
        self._flush()
        return self._sections

    def _flush(self) -> None:
        if self._blocks:
            path = HEADING_PATH_SEPARATOR.join(title for _, title in self._path) or None
            self._sections.append(
                ExtractedSection(SECTION_SEPARATOR.join(self._blocks), None, path)
            )
        self._blocks, self._has_body = [], False
