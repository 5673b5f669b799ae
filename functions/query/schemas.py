"""Request and response bodies of the query API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class QueryBody(BaseModel):
    query: str = Field(min_length=1, max_length=10_000)
    mode: Literal["auto", "fast", "balanced", "deep"] = "auto"
    top_k: int | None = Field(default=None, ge=1, le=100)
    filters: dict[str, Any] = Field(default_factory=dict)
    answer: bool = True
    cache: bool = Field(default=True, description="False: bypass the cache.")


class HitOut(BaseModel):
    document: str
    chunk_id: str
    score: float
    text: str
    page: int | None
    section: str | None = None


class CitationOut(BaseModel):
    number: int
    document: str
    chunk_id: str
    page: int | None


class QueryOut(BaseModel):
    mode: str
    complexity: float
    hits: list[HitOut]
    answer: str | None
    citations: list[CitationOut]
    latency_ms: float
    cache: Literal["hit", "miss"]
    degraded: bool
    stages_ms: dict[str, float] = {}
    notes: list[str] = []
