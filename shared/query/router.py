"""The adaptive router: a complexity score in [0, 1] from cheap query features, and the mode
it selects (FAST below the fast threshold, DEEP at or above the deep threshold).

The features are lexical and cost microseconds: length, clauses, entities and numbers,
comparison and multi-hop cues, and the question type. Weights were set by hand so that short
factoid lookups score low and long, comparative or multi-part questions score high; the tuner
moves the thresholds, not the weights, to reach the target mode mix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["fast", "balanced", "deep"]
MODES: tuple[Mode, ...] = ("fast", "balanced", "deep")

_WORD = re.compile(r"[\w'-]+", re.UNICODE)
_NUMBER = re.compile(r"\b\d[\d.,%/-]*\b")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z0-9-]{2,}")
_ACRONYM = re.compile(r"\b[A-Z]{2,}[0-9]*\b")
_CLAUSE = re.compile(
    r"[,;:]|\b(and|or|but|while|whereas|although|because|if|when|which|that)\b", re.I
)
_COMPARISON = re.compile(
    r"\b(compare|compared|comparison|versus|vs\.?|differ(ence|ent|s)?|better|worse|more than|"
    r"less than|similar(ity)?|relative to|trade-?offs?|pros and cons|advantages?)\b",
    re.I,
)
_MULTI_HOP = re.compile(
    r"\b(both|each|all|between|after|before|then|which of|how many|relationship|cause[sd]?|"
    r"effect of|impact of|why|explain|lead(s)? to|result(s|ed)? in|depend(s|ing)? on)\b",
    re.I,
)
# The first word's question type: lookups are cheap, explanations and syntheses are not.
_QUESTION_WEIGHTS = {
    "who": 0.1,
    "when": 0.1,
    "where": 0.1,
    "what": 0.3,
    "which": 0.4,
    "how": 0.6,
    "describe": 0.6,
    "summarize": 0.7,
    "summarise": 0.7,
    "why": 0.9,
    "explain": 0.9,
    "compare": 0.9,
    "contrast": 0.9,
}


@dataclass(frozen=True)
class QueryFeatures:
    words: int
    clauses: int
    entities: int
    numbers: int
    comparison: bool
    multi_hop: bool
    question_weight: float


def features(query: str) -> QueryFeatures:
    words = _WORD.findall(query)
    first = words[0].lower() if words else ""
    return QueryFeatures(
        words=len(words),
        clauses=len(_CLAUSE.findall(query)),
        entities=len(set(_CAPITALISED.findall(query)) | set(_ACRONYM.findall(query))),
        numbers=len(_NUMBER.findall(query)),
        comparison=bool(_COMPARISON.search(query)),
        multi_hop=bool(_MULTI_HOP.search(query)),
        question_weight=_QUESTION_WEIGHTS.get(first, 0.3),
    )


def complexity(query: str) -> float:
    f = features(query)
    score = (
        0.30 * min(f.words / 30, 1.0)
        + 0.15 * min(f.clauses / 4, 1.0)
        + 0.10 * min((f.entities + f.numbers) / 4, 1.0)
        + 0.15 * f.comparison
        + 0.15 * f.multi_hop
        + 0.15 * f.question_weight
    )
    return round(min(max(score, 0.0), 1.0), 4)


def select_mode(score: float, fast_threshold: float, deep_threshold: float) -> Mode:
    if score < fast_threshold:
        return "fast"
    if score >= deep_threshold:
        return "deep"
    return "balanced"
