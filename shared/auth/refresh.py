"""Refresh tokens: opaque, single-use, rotated on every use, grouped in families.

A login starts a family. Each refresh consumes the presented token and issues its successor in
the same family. Only a SHA-256 hash is stored (the token has 256 random bits, so a fast hash is
enough). Presenting a token that was already used or revoked means it was copied: the whole
family is revoked, which signs out both the thief and the victim (``refresh_reuse``). Two
concurrent refreshes with the same token count as reuse as well.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, Protocol

from shared.auth.audit import AuditEvent, AuditSink
from shared.errors import Unauthorized

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 256
REFRESH_INVALID = "refresh_invalid"
REFRESH_EXPIRED = "refresh_expired"
REFRESH_REUSE = "refresh_reuse"


@dataclass(frozen=True)
class RefreshTokenRecord:
    id: uuid.UUID
    family_id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewRefreshToken:
    token_hash: str
    family_id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    created_at: datetime
    expires_at: datetime


class RefreshTokenStore(Protocol):
    async def add_refresh_token(self, token: NewRefreshToken) -> None: ...

    async def consume_refresh_token(
        self, token_hash: str, *, now: datetime, successor_hash: str, successor_expires_at: datetime
    ) -> RefreshTokenRecord | None:
        """Atomically marks the live (unused, unrevoked, unexpired) token with this hash used and
        stores its successor in the same family; the consumed token, or None if none was live."""
        ...

    async def find_refresh_token(self, token_hash: str) -> RefreshTokenRecord | None: ...

    async def revoke_refresh_family(self, family_id: uuid.UUID, now: datetime) -> int: ...

    async def revoke_user_refresh_tokens(self, user_id: uuid.UUID, now: datetime) -> int: ...


@dataclass(frozen=True)
class IssuedRefreshToken:
    token: str  # give to the client once; never stored
    family_id: uuid.UUID
    expires_at: datetime


@dataclass(frozen=True)
class RefreshRotation:
    refresh: IssuedRefreshToken
    user_id: uuid.UUID
    tenant_id: uuid.UUID


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokenService:
    def __init__(
        self,
        store: RefreshTokenStore,
        audit: AuditSink,
        *,
        ttl_s: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._audit = audit
        self._ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    async def issue(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> IssuedRefreshToken:
        """The first token of a new family (a login)."""
        now = self._clock()
        token = secrets.token_urlsafe(TOKEN_BYTES)
        record = NewRefreshToken(
            hash_refresh_token(token), uuid.uuid4(), user_id, tenant_id, now, now + self._ttl
        )
        await self._store.add_refresh_token(record)
        return IssuedRefreshToken(token, record.family_id, record.expires_at)

    async def rotate(self, presented: str) -> RefreshRotation:
        """Consumes ``presented`` and returns its successor (and whose it is)."""
        presented_hash = _checked_hash(presented)
        now = self._clock()
        successor = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = now + self._ttl
        consumed = await self._store.consume_refresh_token(
            presented_hash,
            now=now,
            successor_hash=hash_refresh_token(successor),
            successor_expires_at=expires_at,
        )
        if consumed is not None:
            issued = IssuedRefreshToken(successor, consumed.family_id, expires_at)
            return RefreshRotation(issued, consumed.user_id, consumed.tenant_id)
        record = await self._store.find_refresh_token(presented_hash)
        if record is None:
            raise Unauthorized("the refresh token is not valid", code=REFRESH_INVALID)
        if record.used_at is not None or record.revoked_at is not None:
            await self._reuse_detected(record, now)
        raise Unauthorized("the refresh token has expired", code=REFRESH_EXPIRED)

    async def revoke(self, presented: str) -> None:
        """Sign-out of one session: revokes the family of ``presented`` (unknown ones: no-op)."""
        record = await self._store.find_refresh_token(_checked_hash(presented))
        if record is not None:
            await self.revoke_family(record.family_id)

    async def revoke_family(self, family_id: uuid.UUID) -> int:
        return await self._store.revoke_refresh_family(family_id, self._clock())

    async def revoke_all_for_user(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, *, actor: str | None = None
    ) -> int:
        """Signs the user out everywhere (logout-all, password change, deactivation)."""
        revoked = await self._store.revoke_user_refresh_tokens(user_id, self._clock())
        await self._audit.record_audit(
            AuditEvent(
                "refresh_token.revoke_all",
                "success",
                tenant_id,
                actor or f"user:{user_id}",
                resource=f"user:{user_id}",
                details={"revoked": revoked},
            )
        )
        return revoked

    async def _reuse_detected(self, record: RefreshTokenRecord, now: datetime) -> NoReturn:
        revoked = await self._store.revoke_refresh_family(record.family_id, now)
        log.warning(
            "refresh token reused: family revoked",
            extra={"family_id": str(record.family_id), "user_id": str(record.user_id)},
        )
        await self._audit.record_audit(
            AuditEvent(
                "refresh_token.reuse",
                "denied",
                record.tenant_id,
                f"user:{record.user_id}",
                resource=f"refresh_family:{record.family_id}",
                details={"revoked": revoked},
            )
        )
        raise Unauthorized(
            "the refresh token was already used; every session of its family is revoked",
            code=REFRESH_REUSE,
        )


def _checked_hash(presented: str) -> str:
    if not presented or len(presented) > MAX_TOKEN_CHARS:
        raise Unauthorized("the refresh token is not valid", code=REFRESH_INVALID)
    return hash_refresh_token(presented)
