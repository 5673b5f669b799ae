from __future__ import annotations

import random

import pytest

from shared.ingestion.extraction.ocr_layout import ocr_text
from shared.ports.ocr import OcrLine

pytestmark = pytest.mark.unit


def line(text: str, x0: float, y0: float, *, width: float = 300, score: float = 0.95) -> OcrLine:
    return OcrLine(text, (x0, y0, x0 + width, y0 + 30), score)


def test_lines_are_put_back_in_reading_order() -> None:
    lines = [
        line("Title of the page", 40, 20),
        line("first line of the body", 40, 80),
        line("second line of the body", 40, 118),
        line("A new paragraph", 40, 200),
    ]
    shuffled = lines[:]
    random.Random(7).shuffle(shuffled)

    assert ocr_text(shuffled) == (
        "Title of the page\n\nfirst line of the body second line of the body\n\nA new paragraph"
    )


def test_boxes_of_one_row_join_left_to_right_even_when_skewed() -> None:
    lines = [line("world", 200, 104, width=100), line("Hello", 40, 100, width=140)]
    assert ocr_text(lines) == "Hello world"


def test_far_apart_boxes_in_a_row_are_separated_by_a_tab() -> None:
    lines = [line("Name", 40, 100, width=80), line("Quantity", 600, 100, width=120)]
    assert ocr_text(lines) == "Name\tQuantity"


def test_word_hyphenated_across_lines_is_joined() -> None:
    lines = [line("the excava-", 40, 100), line("tion went well. Non-", 40, 138)]
    lines.append(line("Stop work.", 40, 176))
    assert ocr_text(lines) == "the excavation went well. Non- Stop work."


def test_low_confidence_and_symbol_only_lines_are_dropped() -> None:
    lines = [
        line("Keep this line", 40, 100),
        line("garbage", 40, 140, score=0.2),
        line("| ~ —", 40, 180),
    ]
    assert ocr_text(lines) == "Keep this line"
    assert ocr_text(lines, min_score=0.1) == "Keep this line garbage"


@pytest.mark.parametrize(
    ("raw", "repaired"),
    [
        ("end of one.Next sentence", "end of one. Next sentence"),
        ("apples,pears;plums:figs", "apples, pears; plums: figs"),
        ("a word , then more .", "a word, then more."),
        ("too   many    spaces", "too many spaces"),
        ("pi is 3.14, e.g. about 1,000.5 and www.example.com", None),
    ],
)
def test_spacing_is_repaired_only_where_unambiguous(raw: str, repaired: str | None) -> None:
    assert ocr_text([line(raw, 40, 100)]) == (repaired or raw)


def test_no_lines_is_no_text() -> None:
    assert ocr_text([]) == ""
