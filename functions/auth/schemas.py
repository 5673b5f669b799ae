"""Request and response bodies of the auth API. Every string and list is bounded."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.auth.passwords import MAX_PASSWORD_CHARS
from shared.auth.rbac import Role
from shared.auth.users import MAX_EMAIL_CHARS, MAX_TENANT_NAME_CHARS

Email = Field(min_length=3, max_length=MAX_EMAIL_CHARS)
Password = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class RegisterBody(BaseModel):
    email: str = Email
    password: str = Password
    tenant_name: str = Field(min_length=1, max_length=MAX_TENANT_NAME_CHARS)


class TokenBody(BaseModel):
    email: str = Email
    password: str = Password


class RefreshBody(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type)
    expires_in: int
    refresh_expires_at: datetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: Role
    is_active: bool
    created_at: datetime


class MeOut(BaseModel):
    kind: Literal["user", "api_key"]
    tenant_id: uuid.UUID
    role: Role
    scopes: list[str]
    user: UserOut | None = None
    api_key_id: uuid.UUID | None = None


class UserCreate(BaseModel):
    email: str = Email
    password: str = Password
    role: Role = Role.MEMBER


class UserUpdate(BaseModel):
    role: Role | None = None
    is_active: bool | None = None


class UserList(BaseModel):
    items: list[UserOut]


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=20)
    role: Role | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    scopes: list[str]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The whole key. Shown once: only its hash is stored.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


class SecretPut(BaseModel):
    value: str = Field(min_length=1, max_length=16 * 1024)


class SecretOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: datetime
    updated_at: datetime


class SecretList(BaseModel):
    items: list[SecretOut]


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    action: str
    outcome: str
    principal: str | None
    resource: str | None
    request_id: str | None
    ip: str | None
    details: dict[str, Any]


class AuditList(BaseModel):
    items: list[AuditOut]
    next_before_id: int | None = Field(
        default=None, description="Pass as `before_id` for the next (older) page."
    )
