"""Structure-aware, token-bounded chunking.

Each section of a document (a PDF page, a Markdown/HTML/DOCX section) is chunked on its own, so no
chunk spans two pages or two sections. Within a section the text is cut into words; each gap between
words has a break strength (paragraph > sentence > line > word > inside an over-long word). A chunk
takes as many words as fit in ``chunk_size_tokens`` and then ends at the strongest break in its
second half, so chunks end at paragraphs where they can, else at sentences, else at words. Of equal
breaks, one that leaves the section's last chunk tiny is avoided. (Merging a tiny last chunk into
the one before never fits: that chunk was already as long as fits.) The next chunk starts up to
``chunk_overlap_tokens`` earlier, at a sentence start where one is in reach.

Offsets are kept exactly: ``doc.text[c.char_start:c.char_end] == c.text`` for every chunk.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from shared.ingestion.documents import Chunk, ExtractedDocument
from shared.ingestion.tokens import ApproxWordPieceCounter, TokenCounter

_PARAGRAPH, _SENTENCE, _LINE, _WORD, _INSIDE_WORD = 4, 3, 2, 1, 0
_WORDS = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")  # closing quotes and brackets


@dataclass(frozen=True)
class _Atom:
    start: int
    end: int
    tokens: int
    strength: int  # of the break before this atom


def chunk_document(
    doc: ExtractedDocument,
    *,
    chunk_size_tokens: int,
    chunk_overlap_tokens: int,
    counter: TokenCounter | None = None,
) -> list[Chunk]:
    if chunk_size_tokens < 1 or not 0 <= chunk_overlap_tokens < chunk_size_tokens:
        raise ValueError("need chunk_size_tokens >= 1 and 0 <= chunk_overlap_tokens < chunk size")
    counter = counter or ApproxWordPieceCounter()
    text = doc.text
    chunks: list[Chunk] = []
    for section, start in zip(doc.sections, doc.section_starts, strict=True):
        atoms = _atoms(text, start, start + len(section.text), counter, chunk_size_tokens)
        for first, stop in _windows(atoms, chunk_size_tokens, chunk_overlap_tokens):
            char_start, char_end = atoms[first].start, atoms[stop - 1].end
            chunk_text = text[char_start:char_end]
            chunks.append(
                Chunk(
                    ordinal=len(chunks),
                    text=chunk_text,
                    char_start=char_start,
                    char_end=char_end,
                    page=section.page,
                    section=section.heading,
                    token_count=counter.count(chunk_text),
                )
            )
    return chunks


def _atoms(text: str, start: int, end: int, counter: TokenCounter, size: int) -> list[_Atom]:
    atoms: list[_Atom] = []
    previous_end = start
    previous_word = ""
    for match in _WORDS.finditer(text, start, end):
        word = match.group()
        strength = _break_strength(text[previous_end : match.start()], previous_word, word)
        tokens = counter.count(word)
        if tokens <= size:
            atoms.append(_Atom(match.start(), match.end(), tokens, strength))
        else:
            atoms.extend(_split_word(text, match.start(), match.end(), counter, size, strength))
        previous_end, previous_word = match.end(), word
    return atoms


def _break_strength(gap: str, previous_word: str, word: str) -> int:
    if gap.count("\n") >= 2:
        return _PARAGRAPH
    if _SENTENCE_END.search(previous_word) and (word[0].isupper() or not word[0].isalpha()):
        return _SENTENCE
    return _LINE if "\n" in gap else _WORD


def _split_word(
    text: str, start: int, end: int, counter: TokenCounter, size: int, strength: int
) -> list[_Atom]:
    """Cut a word longer than a whole chunk (a URL, base64, a long formula) into pieces that fit."""
    pieces: list[_Atom] = []
    # Start from the length that would fit if tokens were spread evenly, then shrink to fit.
    step = max(1, (end - start) * size // counter.count(text[start:end]))
    position = start
    while position < end:
        step = min(step, end - position)
        while step > 1 and counter.count(text[position : position + step]) > size:
            step = step * 9 // 10
        tokens = counter.count(text[position : position + step])
        pieces.append(
            _Atom(position, position + step, tokens, _INSIDE_WORD if pieces else strength)
        )
        position += step
    return pieces


def _windows(atoms: list[_Atom], size: int, overlap: int) -> list[tuple[int, int]]:
    """The chunks of one section as half-open ranges of atom indices."""
    if not atoms:
        return []
    cumulative = [0]
    for atom in atoms:
        cumulative.append(cumulative[-1] + atom.tokens)
    windows: list[tuple[int, int]] = []
    first, previous_stop = 0, 0
    while True:
        stop = max(bisect.bisect_right(cumulative, cumulative[first] + size) - 1, first + 1)
        if stop >= len(atoms):
            windows.append((first, len(atoms)))
            break
        # A chunk must reach past the previous one, or it would repeat text it overlaps.
        stop = _best_break(atoms, cumulative, first, max(first, previous_stop) + 1, stop, size)
        windows.append((first, stop))
        first, previous_stop = _next_start(atoms, cumulative, first, stop, size, overlap), stop
    return windows


def _best_break(
    atoms: list[_Atom], cumulative: list[int], first: int, lowest: int, stop: int, size: int
) -> int:
    """The strongest break in ``lowest..stop`` that leaves this chunk at least half full. Of equally
    strong breaks, one that leaves a quarter chunk or more for the rest of the section wins, so a
    section does not end in a tiny chunk; then the latest."""
    candidates = [
        candidate
        for candidate in range(lowest, stop + 1)
        if cumulative[candidate] - cumulative[first] >= size // 2
    ]
    return max(
        candidates or [stop],
        key=lambda c: (atoms[c].strength, cumulative[-1] - cumulative[c] >= size // 4, c),
    )


def _next_start(
    atoms: list[_Atom], cumulative: list[int], first: int, stop: int, size: int, overlap: int
) -> int:
    # Overlap only as much as leaves room for the next atom, so the next chunk gets new text.
    budget = min(overlap, size - atoms[stop].tokens)
    if budget <= 0:
        return stop
    earliest = bisect.bisect_left(cumulative, cumulative[stop] - budget, first + 1, stop)
    for candidate in range(earliest, stop):
        if atoms[candidate].strength >= _SENTENCE:
            return candidate
    return earliest
