"""OCR lines back into text: reading order, paragraphs, word spacing, and no junk.

OCR engines return boxes in no useful order. Lines are grouped into rows (boxes that overlap
vertically by at least half the smaller height), rows are read top to bottom and each row left to
right. A vertical gap larger than ``_PARAGRAPH_GAP`` line heights starts a new paragraph; within a
paragraph the layout's line breaks are dropped, and a word hyphenated across a line break is joined.

Spacing is repaired only where punctuation makes it unambiguous ("end.Next" -> "end. Next",
"word ," -> "word,"). Words the engine ran together without punctuation ("thequick") stay as they
are: splitting them reliably needs a lexicon of the document's language.
"""

from __future__ import annotations

import re
from itertools import pairwise
from statistics import median

from shared.ports.ocr import OcrLine

DEFAULT_MIN_SCORE = 0.5
_SAME_ROW_OVERLAP = 0.5  # share of the smaller box height
_PARAGRAPH_GAP = 0.8  # in median line heights
_COLUMN_GAP = 2.0  # a gap this many row heights wide separates cells or columns, not words

_HAS_TEXT = re.compile(r"\w")
_SPACE_RUNS = re.compile(r" {2,}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"(?<=\w) +([,.;:!?])(?=\s|$)")
_MISSING_SPACE_AFTER_SENTENCE = re.compile(r"(?<=[a-z]{2})([.!?])(?=[A-Z][a-z])")
_MISSING_SPACE_AFTER_COMMA = re.compile(r"(?<=[^\W\d_])([,;:])(?=[^\W\d_])")
_HYPHENATED_END = re.compile(r"[^\W\d_]-$")


def ocr_text(lines: list[OcrLine], *, min_score: float = DEFAULT_MIN_SCORE) -> str:
    """The text of one page from its OCR lines; paragraphs are separated by a blank line."""
    kept = [line for line in lines if line.score >= min_score and _HAS_TEXT.search(line.text)]
    if not kept:
        return ""
    rows = _rows(kept)
    line_height = median(line.box[3] - line.box[1] for line in kept)
    paragraphs: list[list[str]] = []
    previous_bottom: float | None = None
    for row in rows:
        top = min(line.box[1] for line in row)
        if previous_bottom is None or top - previous_bottom > _PARAGRAPH_GAP * line_height:
            paragraphs.append([])
        paragraphs[-1].append(_row_text(row))
        previous_bottom = max(line.box[3] for line in row)
    return "\n\n".join(_repair_spacing(_join_rows(paragraph)) for paragraph in paragraphs)


def _rows(lines: list[OcrLine]) -> list[list[OcrLine]]:
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda item: (item.box[1] + item.box[3]) / 2):
        if rows and _same_row(rows[-1], line):
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda item: item.box[0]) for row in rows]


def _same_row(row: list[OcrLine], line: OcrLine) -> bool:
    top, bottom = min(item.box[1] for item in row), max(item.box[3] for item in row)
    height = min(bottom - top, line.box[3] - line.box[1])
    overlap = min(bottom, line.box[3]) - max(top, line.box[1])
    return height > 0 and overlap >= _SAME_ROW_OVERLAP * height


def _row_text(row: list[OcrLine]) -> str:
    height = median(line.box[3] - line.box[1] for line in row)
    parts = [row[0].text.strip()]
    for previous, line in pairwise(row):
        gap = line.box[0] - previous.box[2]
        parts.append("\t" if gap > _COLUMN_GAP * height else " ")
        parts.append(line.text.strip())
    return "".join(parts)


def _join_rows(rows: list[str]) -> str:
    text = rows[0]
    for row in rows[1:]:
        if _HYPHENATED_END.search(text) and row[:1].islower():
            text = text[:-1] + row
        else:
            text = f"{text} {row}"
    return text


def _repair_spacing(text: str) -> str:
    text = _SPACE_RUNS.sub(" ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    text = _MISSING_SPACE_AFTER_SENTENCE.sub(r"\1 ", text)
    return _MISSING_SPACE_AFTER_COMMA.sub(r"\1 ", text)
