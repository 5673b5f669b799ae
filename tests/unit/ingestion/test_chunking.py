from __future__ import annotations

import itertools
import random

import pytest

from shared.ingestion.chunking import chunk_document
from shared.ingestion.documents import Chunk, ExtractedDocument, ExtractedSection
from shared.ingestion.tokens import ApproxWordPieceCounter

pytestmark = pytest.mark.unit


class WordCounter:
    """One token per whitespace-separated word: makes sizes in these tests easy to read."""

    def count(self, text: str) -> int:
        return len(text.split())


def doc_of(*sections: ExtractedSection) -> ExtractedDocument:
    return ExtractedDocument("d", "d", "text/plain", list(sections))


def chunks_of(text: str, size: int, overlap: int = 0) -> list[Chunk]:
    return chunk_document(
        doc_of(ExtractedSection(text)),
        chunk_size_tokens=size,
        chunk_overlap_tokens=overlap,
        counter=WordCounter(),
    )


def words(n: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def test_pages_and_sections_are_never_merged() -> None:
    doc = doc_of(
        ExtractedSection("Page one text.", page=1),
        ExtractedSection("Page two text.", page=2),
        ExtractedSection("Setup steps.", heading="Intro > Setup"),
    )
    chunks = chunk_document(doc, chunk_size_tokens=256, chunk_overlap_tokens=32)
    assert [(c.text, c.page, c.section) for c in chunks] == [
        ("Page one text.", 1, None),
        ("Page two text.", 2, None),
        ("Setup steps.", None, "Intro > Setup"),
    ]
    assert [c.ordinal for c in chunks] == [0, 1, 2]


def test_chunks_end_at_a_paragraph_break_when_one_is_in_the_second_half() -> None:
    text = f"{words(9, 'a')}\n\n{words(3, 'B')}. {words(6, 'C')}."
    chunks = chunks_of(text, size=16)
    assert chunks[0].text == words(9, "a")


def test_chunks_end_at_a_sentence_before_a_word() -> None:
    text = f"{words(9, 'a')}. {words(4, 'B')} {words(10, 'c')}"
    chunks = chunks_of(text, size=16)
    assert chunks[0].text == f"{words(9, 'a')}."


def test_a_lowercase_word_after_a_full_stop_is_no_sentence_start() -> None:
    text = f"{words(9, 'a')} e.g. {words(4, 'b')} {words(10, 'c')}"
    assert chunks_of(text, size=16)[0].token_count == 16


def test_break_too_early_in_the_chunk_is_not_taken() -> None:
    text = f"{words(3, 'a')}.\n\n{words(30, 'b')}"
    first = chunks_of(text, size=16)[0]
    assert first.token_count == 16


def test_overlap_starts_at_a_sentence_in_reach() -> None:
    text = f"{words(12, 'a')}. {words(3, 'B')}. {words(12, 'C')}."
    first, second = chunks_of(text, size=16, overlap=5)[:2]
    assert first.text.endswith(f"{words(3, 'B')}.")
    assert second.text.startswith(f"{words(3, 'B')}.")


def test_overlap_without_a_sentence_start_is_word_aligned() -> None:
    chunks = chunks_of(words(40), size=10, overlap=3)
    for previous, current in itertools.pairwise(chunks):
        shared_words = previous.text.split()[-3:]
        assert current.text.split()[:3] == shared_words


def test_section_does_not_end_in_a_tiny_chunk() -> None:
    # Greedy packing would give 16 + 2 words; the last chunk gets a quarter chunk instead.
    assert [c.token_count for c in chunks_of(words(18), size=16)] == [14, 4]


def test_structure_beats_tail_size() -> None:
    text = f"{words(15, 'a')}.\n\n{words(2, 'B')}."
    assert [c.token_count for c in chunks_of(text, size=16)] == [15, 2]


def test_a_word_longer_than_a_chunk_is_cut() -> None:
    long_word = "x" * 400  # 100 tokens for the default counter
    doc = doc_of(ExtractedSection(f"before {long_word} after"))
    chunks = chunk_document(doc, chunk_size_tokens=32, chunk_overlap_tokens=4)
    assert all(c.token_count <= 32 for c in chunks)
    assert "".join(c.text for c in chunks if "x" in c.text).count("x") >= 400


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="chunk"):
        chunks_of("text", size=10, overlap=10)


def _random_document(rng: random.Random) -> ExtractedDocument:
    vocabulary = [
        "granite", "the", "of", "phosphorylation", "Quarry", "x²", "naïve", "采石场", "3.14159",
        "e.g.", "(see", "Fig.", "2)", "—", "https://example.com/a/very/long/path?q=1", "a" * 300,
    ]  # fmt: skip
    separators = [" ", " ", " ", "  ", "\t", "\n", "\n\n", "\n\n\n", ". ", "! ", "? "]
    sections = []
    for page in range(rng.randint(1, 4)):
        pieces = [
            rng.choice(vocabulary) + rng.choice(separators) for _ in range(rng.randint(0, 400))
        ]
        text = "".join(pieces).strip() or "x"
        sections.append(ExtractedSection(text, page=page + 1, heading=rng.choice([None, "A > B"])))
    return doc_of(*sections)


@pytest.mark.parametrize("seed", range(12))
def test_offsets_are_exact_for_varied_documents(seed: int) -> None:
    rng = random.Random(seed)
    doc = _random_document(rng)
    size = rng.choice([16, 32, 64, 256])
    overlap = rng.choice([0, size // 8, size // 2])
    counter = ApproxWordPieceCounter()

    chunks = chunk_document(doc, chunk_size_tokens=size, chunk_overlap_tokens=overlap)

    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = [False] * len(doc.text)
    for chunk in chunks:
        assert doc.text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.token_count == counter.count(chunk.text) <= size
        index = doc.section_starts.index(
            max(s for s in doc.section_starts if s <= chunk.char_start)
        )
        section_end = doc.section_starts[index] + len(doc.sections[index].text)
        assert chunk.char_end <= section_end, "a chunk crossed a section"
        assert chunk.page == doc.sections[index].page
        for position in range(chunk.char_start, chunk.char_end):
            covered[position] = True
    uncovered = {doc.text[i] for i, seen in enumerate(covered) if not seen}
    assert uncovered <= {" ", "\t", "\n"}, "text was lost"
    starts = [c.char_start for c in chunks]
    assert starts == sorted(starts)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("the cat sat", 3),
        ("quarry", 2),  # 6 letters: ceil(6 / 4)
        ("phosphorylation", 4),
        ("2024", 2),
        ("e.g.", 4),
        ("采石场", 3),
        ("naïve", 2),
        ("", 0),
    ],
)
def test_approximate_word_piece_counts(text: str, tokens: int) -> None:
    assert ApproxWordPieceCounter().count(text) == tokens
