"""Sign-in sessions: password login, refresh and logout, each giving an access + refresh pair.

A refresh reloads the user, so a changed role shows in the next access token and a deactivated
or deleted user cannot refresh (their sessions are revoked). Password checks run in a worker
thread: argon2 is deliberately slow and must not block the event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.auth.audit import AuditEvent, AuditSink
from shared.auth.passwords import MAX_PASSWORD_CHARS, PasswordHasher
from shared.auth.rbac import Role
from shared.auth.refresh import RefreshTokenService
from shared.auth.tokens import TokenIssuer
from shared.errors import Unauthorized

INVALID_CREDENTIALS = "invalid_credentials"


@dataclass(frozen=True)
class UserRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    password_hash: str
    role: Role
    is_active: bool


class UserStore(Protocol):
    async def find_user_by_email(self, email: str) -> UserRecord | None: ...

    async def get_user(self, user_id: uuid.UUID) -> UserRecord | None: ...

    async def update_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None: ...


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_in_s: int
    refresh_token: str
    refresh_expires_at: datetime
    token_type: str = "Bearer"  # noqa: S105 (the OAuth token type)


def normalise_email(email: str) -> str:
    return email.strip().lower()


class SessionService:
    def __init__(
        self,
        users: UserStore,
        passwords: PasswordHasher,
        access: TokenIssuer,
        refresh: RefreshTokenService,
        audit: AuditSink,
    ) -> None:
        self._users = users
        self._passwords = passwords
        self._access = access
        self._refresh = refresh
        self._audit = audit

    async def login(self, email: str, password: str, *, ip: str | None = None) -> TokenPair:
        """A new session; ``invalid_credentials`` alike for an unknown email, a wrong password
        and a deactivated account (and in about the same time)."""
        user = await self._users.find_user_by_email(normalise_email(email))
        # No valid password is longer than the policy allows: such input only gets a dummy
        # verification (bounded in length), so it fails in the usual time.
        too_long = len(password) > MAX_PASSWORD_CHARS
        stored = user.password_hash if user is not None and not too_long else None
        verdict = await asyncio.to_thread(
            self._passwords.verify, stored, password[:MAX_PASSWORD_CHARS]
        )
        if user is None or not verdict.ok or not user.is_active:
            await self._audit.record_audit(
                AuditEvent(
                    "auth.login",
                    "denied",
                    user.tenant_id if user else None,
                    f"user:{user.id}" if user else None,
                    details={"reason": "inactive" if user and verdict.ok else "credentials"},
                    ip=ip,
                )
            )
            raise Unauthorized("wrong email or password", code=INVALID_CREDENTIALS)
        if verdict.new_hash is not None:
            await self._users.update_password_hash(user.id, verdict.new_hash)
        await self._audit.record_audit(
            AuditEvent("auth.login", "success", user.tenant_id, f"user:{user.id}", ip=ip)
        )
        refresh = await self._refresh.issue(user.id, user.tenant_id)
        return self._pair(user, refresh.token, refresh.expires_at)

    async def refresh(self, presented: str) -> TokenPair:
        rotation = await self._refresh.rotate(presented)
        user = await self._users.get_user(rotation.user_id)
        if user is None or not user.is_active or user.tenant_id != rotation.tenant_id:
            await self._refresh.revoke_family(rotation.refresh.family_id)
            raise Unauthorized("the account is not active", code="account_inactive")
        await self._audit.record_audit(
            AuditEvent(
                "auth.refresh",
                "success",
                user.tenant_id,
                f"user:{user.id}",
                resource=f"refresh_family:{rotation.refresh.family_id}",
            )
        )
        return self._pair(user, rotation.refresh.token, rotation.refresh.expires_at)

    async def logout(self, presented: str) -> None:
        await self._refresh.revoke(presented)

    async def logout_everywhere(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        return await self._refresh.revoke_all_for_user(user_id, tenant_id)

    def _pair(
        self, user: UserRecord, refresh_token: str, refresh_expires_at: datetime
    ) -> TokenPair:
        access = self._access.issue(user_id=user.id, tenant_id=user.tenant_id, role=user.role)
        return TokenPair(access.token, access.expires_in_s, refresh_token, refresh_expires_at)
