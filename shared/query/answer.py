"""Answers with citations.

The local default is extractive: the sentences of the top passages that best cover the
question's terms, each followed by the number of the passage it came from. Nothing is written
that is not in a cited passage. A configured LLM (``AnswerGenerator``) writes the answer
instead, from the same numbered passages, and must cite them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.query.expansion import tokens

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Citation:
    number: int
    document: str
    chunk_id: str
    page: int | None


@dataclass(frozen=True)
class Answer:
    text: str
    citations: list[Citation]


class PassageChunk(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def document(self) -> str: ...
    @property
    def chunk_id(self) -> object: ...
    @property
    def page(self) -> int | None: ...


class Passage(Protocol):
    """What an answer is written from: a retrieval ``Hit``, or a workflow's passage."""

    @property
    def chunk(self) -> PassageChunk: ...


class AnswerGenerator(Protocol):
    def generate(self, question: str, passages: list[str]) -> str:
        """An answer citing passages as [1], [2], ... (numbered from 1, in the given order)."""
        ...


def citations_for(hits: Sequence[Passage]) -> list[Citation]:
    return [
        Citation(i + 1, h.chunk.document, str(h.chunk.chunk_id), h.chunk.page)
        for i, h in enumerate(hits)
    ]


def extractive_answer(
    question: str, hits: Sequence[Passage], *, max_sentences: int = 3, passages: int = 5
) -> Answer:
    terms = set(tokens(question))
    candidates: list[tuple[float, int, int, str]] = []
    for rank, hit in enumerate(hits[:passages]):
        for position, sentence in enumerate(_SENTENCE.split(hit.chunk.text.strip())):
            sentence = " ".join(sentence.split())
            words = tokens(sentence)
            if len(words) < 3:
                continue
            overlap = len(terms & set(words)) / (len(terms) or 1)
            # Coverage of the question first; a better-ranked passage and an earlier
            # sentence break ties.
            score = overlap + 0.15 / (rank + 1) + 0.02 / (position + 1)
            candidates.append((score, rank, position, sentence))
    if not candidates:
        return Answer("", [])
    chosen = sorted(candidates, reverse=True)[:max_sentences]
    chosen.sort(key=lambda c: (c[1], c[2]))  # read in passage order
    used = sorted({rank for _, rank, _, _ in chosen})
    numbering = {rank: i + 1 for i, rank in enumerate(used)}
    text = " ".join(f"{sentence} [{numbering[rank]}]" for _, rank, _, sentence in chosen)
    cited = [hits[rank] for rank in used]
    return Answer(text, citations_for(cited))


def generated_answer(generator: AnswerGenerator, question: str, hits: Sequence[Passage]) -> Answer:
    """Keeps only the citations the generated text actually makes, renumbered in order."""
    text = generator.generate(question, [h.chunk.text for h in hits])
    cited = sorted({int(n) for n in _CITATION.findall(text) if 0 < int(n) <= len(hits)})
    renumber = {old: new + 1 for new, old in enumerate(cited)}
    text = _CITATION.sub(
        lambda m: f"[{renumber[int(m.group(1))]}]" if int(m.group(1)) in renumber else "", text
    )
    return Answer(text.strip(), citations_for([hits[n - 1] for n in cited]))
