"""Request and response bodies of the KB admin API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class KbCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    embedding_model: str = "all-MiniLM-L6-v2"
    chunk_size_tokens: int = Field(default=256, ge=16, le=512)
    chunk_overlap_tokens: int = Field(default=32, ge=0, le=255)


class KbUpdate(BaseModel):
    description: str = Field(max_length=2000)


class KbOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    embedding_model: str
    embedding_dim: int
    chunk_size_tokens: int
    chunk_overlap_tokens: int
    version: int
    restricted: bool = False
    created_at: datetime
    updated_at: datetime


class KbList(BaseModel):
    items: list[KbOut]


class KbStatsOut(BaseModel):
    kb: KbOut
    documents: int
    documents_by_status: dict[str, int]
    chunks: int
    bytes: int


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    media_type: str
    size_bytes: int
    status: str
    error_code: str | None
    error_message: str | None
    page_count: int | None
    chunk_count: int
    generation: int
    created_at: datetime
    updated_at: datetime


class DocumentList(BaseModel):
    items: list[DocumentOut]
    limit: int
    offset: int


class ChunkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ordinal: int
    text: str
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    token_count: int


class DocumentDetail(DocumentOut):
    chunks: list[ChunkOut]


class RunOut(BaseModel):
    id: uuid.UUID
    status: str
    error_code: str | None
    error_message: str | None
    steps: dict[str, str]
    failures: list[dict[str, Any]] = []


class UploadOut(BaseModel):
    documents: list[DocumentOut]
    unchanged: list[str] = []
    run: RunOut | None = None


class UploadUrlRequest(BaseModel):
    name: str = Field(min_length=1, max_length=1024)
    content_type: str = "application/octet-stream"


class UploadUrlOut(BaseModel):
    url: str
    key: str
    expires_in: int


class KbGrantOut(BaseModel):
    user_id: uuid.UUID
    level: Literal["read", "write", "admin"]


class KbAccessIn(BaseModel):
    restricted: bool
    grants: list[KbGrantOut] = Field(default_factory=list, max_length=1000)


class KbAccessOut(BaseModel):
    restricted: bool
    grants: list[KbGrantOut]
