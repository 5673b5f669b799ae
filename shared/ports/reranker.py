"""The reranking port: score passages against a query (a cross-encoder, typically)."""

from __future__ import annotations

from typing import Protocol


class Reranker(Protocol):
    def rerank(self, query: str, passages: list[str]) -> list[float]:
        """One score per passage, in the passages' order; higher is more relevant. Blocking
        (a model or network call): call it off the event loop."""
        ...
