"""Request and response bodies of the workflows API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WorkflowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    version: int
    description: str
    created_by: str | None
    created_at: datetime


class WorkflowDetail(WorkflowOut):
    definition: dict[str, Any]


class WorkflowList(BaseModel):
    items: list[WorkflowOut]


class RunStart(BaseModel):
    input: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1, description="Default: the latest.")
    wait: bool = Field(default=False, description="Answer once the run finished or paused.")


class Decision(BaseModel):
    node: str | None = Field(
        default=None, max_length=255, description="The approval's node key, if several wait."
    )
    comment: str | None = Field(default=None, max_length=2000)
    wait: bool = False


class ResumeBody(BaseModel):
    wait: bool = False


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workflow_name: str
    workflow_version: int
    status: str
    input: dict[str, Any]
    output: Any
    error_code: str | None
    error_message: str | None
    failed_node: str | None
    started_by: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    duration_ms: float | None


class NodeRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    node_key: str
    node_id: str
    node_type: str
    status: str
    attempt: int
    input: Any
    output: Any
    error_code: str | None
    error_message: str | None
    tools: list[str]
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    expires_at: datetime | None
    decided_by: str | None
    decision: str | None


class RunDetail(RunOut):
    nodes: list[NodeRunOut]


class RunList(BaseModel):
    items: list[RunOut]
    limit: int
    offset: int
