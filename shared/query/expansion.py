"""Pseudo-relevance feedback: expansion terms from the top results of a first retrieval.

Terms are weighted by how often they occur in the feedback passages (each passage weighted by
its rank) against how common they are across all of them, so a term that marks the top
passages, not the collection, is preferred. Cheap (no model) and language-agnostic enough for
English text; the keyword index then searches the query plus these terms.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"[a-z][a-z0-9-]{2,}")
_STOP_WORDS_TEXT = """
a about above after again against all also am an and any are as at be because been
before being below between both but by can could did do does doing down during each few
for from further had has have having he her here hers herself him himself his how i if
in into is it its itself just me more most my myself no nor not now of off on once only
or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your
yours yourself yourselves may might must shall using used use via within without however
therefore thus whether among across per et al study studies results result show shows
showed shown
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS]


def expansion_terms(query: str, feedback: list[str], *, max_terms: int = 8) -> list[str]:
    """Up to ``max_terms`` new terms from ``feedback`` passages, best first."""
    if not feedback:
        return []
    in_query = set(tokens(query))
    weights: dict[str, float] = {}
    document_frequency: Counter[str] = Counter()
    for rank, passage in enumerate(feedback):
        counts = Counter(tokens(passage))
        total = sum(counts.values()) or 1
        rank_weight = 1.0 / (rank + 1)
        for term, count in counts.items():
            weights[term] = weights.get(term, 0.0) + rank_weight * count / total
        document_frequency.update(counts.keys())
    n = len(feedback)
    scored = {
        term: weight * math.log(1 + n / document_frequency[term])
        for term, weight in weights.items()
        if term not in in_query and document_frequency[term] >= min(2, n)
    }
    return sorted(scored, key=scored.__getitem__, reverse=True)[:max_terms]
