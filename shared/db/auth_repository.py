"""Users, refresh tokens, API keys and audit entries in the database.

Hands out the auth domain's records (``shared.auth``), never ORM objects. SQLite gives datetimes
back without a zone: every one read here is UTC by construction and gets its zone back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from shared.auth.api_keys import ApiKeyRecord
from shared.auth.audit import AuditEvent, AuditRecord
from shared.auth.rbac import Role
from shared.auth.refresh import NewRefreshToken, RefreshTokenRecord
from shared.auth.sessions import UserRecord
from shared.auth.users import UserInfo
from shared.db.engine import Database
from shared.db.models import ApiKey, AuditEntry, RefreshToken, Tenant, User, as_utc
from shared.errors import Conflict
from shared.observability.logging import request_id_var


class AuthRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    # --- users ---------------------------------------------------------------------------
    async def create_user(
        self, tenant_id: uuid.UUID, email: str, password_hash: str, role: Role
    ) -> UserRecord:
        user = User(tenant_id=tenant_id, email=email, password_hash=password_hash, role=role.value)
        try:
            async with self._db.session() as session:
                session.add(user)
        except IntegrityError as exc:
            raise Conflict(f"a user with email {email!r} exists", code="email_taken") from exc
        return _user(user)

    async def create_tenant_with_owner(
        self, tenant_name: str, email: str, password_hash: str
    ) -> UserInfo:
        tenant = Tenant(name=tenant_name)
        user = User(email=email, password_hash=password_hash, role=Role.OWNER.value)
        try:
            async with self._db.session() as session:
                session.add(tenant)
                await session.flush()
                user.tenant_id = tenant.id
                session.add(user)
                await session.flush()
        except IntegrityError as exc:
            async with self._db.session() as session:
                taken = await session.scalar(select(Tenant.id).where(Tenant.name == tenant_name))
            if taken is not None:
                raise Conflict(
                    f"a tenant named {tenant_name!r} exists", code="tenant_exists"
                ) from exc
            raise Conflict("a user with this email exists", code="email_taken") from exc
        return _user_info(user)

    async def list_users(self, tenant_id: uuid.UUID) -> Sequence[UserInfo]:
        async with self._db.session() as session:
            users = await session.scalars(
                select(User).where(User.tenant_id == tenant_id).order_by(User.created_at)
            )
            return [_user_info(u) for u in users]

    async def get_tenant_user(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserInfo | None:
        async with self._db.session() as session:
            user = await session.scalar(
                select(User).where(User.tenant_id == tenant_id, User.id == user_id)
            )
        return _user_info(user) if user is not None else None

    async def update_user(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
    ) -> UserInfo | None:
        async with self._db.session() as session:
            user = await session.scalar(
                select(User).where(User.tenant_id == tenant_id, User.id == user_id)
            )
            if user is None:
                return None
            if role is not None:
                user.role = role.value
            if is_active is not None:
                user.is_active = is_active
            await session.flush()
            return _user_info(user)

    async def find_user_by_email(self, email: str) -> UserRecord | None:
        async with self._db.session() as session:
            user = await session.scalar(select(User).where(User.email == email))
        return _user(user) if user is not None else None

    async def get_user(self, user_id: uuid.UUID) -> UserRecord | None:
        async with self._db.session() as session:
            user = await session.get(User, user_id)
        return _user(user) if user is not None else None

    async def update_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(User).where(User.id == user_id).values(password_hash=password_hash)
            )

    # --- refresh tokens ------------------------------------------------------------------
    async def add_refresh_token(self, token: NewRefreshToken) -> None:
        async with self._db.session() as session:
            session.add(RefreshToken(**vars(token)))

    async def consume_refresh_token(
        self, token_hash: str, *, now: datetime, successor_hash: str, successor_expires_at: datetime
    ) -> RefreshTokenRecord | None:
        # One conditional UPDATE: of two concurrent consumers only one matches the row.
        consume = (
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(RefreshToken)
            .execution_options(synchronize_session=False)
        )
        async with self._db.session() as session:
            consumed = (await session.scalars(consume)).one_or_none()
            if consumed is None:
                return None
            session.add(
                RefreshToken(
                    token_hash=successor_hash,
                    family_id=consumed.family_id,
                    user_id=consumed.user_id,
                    tenant_id=consumed.tenant_id,
                    created_at=now,
                    expires_at=successor_expires_at,
                )
            )
            return _refresh(consumed)

    async def find_refresh_token(self, token_hash: str) -> RefreshTokenRecord | None:
        async with self._db.session() as session:
            token = await session.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == token_hash)
            )
        return _refresh(token) if token is not None else None

    async def revoke_refresh_family(self, family_id: uuid.UUID, now: datetime) -> int:
        return await self._revoke_refresh(RefreshToken.family_id == family_id, now)

    async def revoke_user_refresh_tokens(self, user_id: uuid.UUID, now: datetime) -> int:
        return await self._revoke_refresh(RefreshToken.user_id == user_id, now)

    async def _revoke_refresh(self, condition: Any, now: datetime) -> int:
        async with self._db.session() as session:
            result = await session.execute(
                update(RefreshToken)
                .where(condition, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    # --- API keys ------------------------------------------------------------------------
    async def add_api_key(self, record: ApiKeyRecord) -> None:
        values = {**vars(record), "role": record.role.value, "scopes": sorted(record.scopes)}
        try:
            async with self._db.session() as session:
                session.add(ApiKey(**values))
        except IntegrityError as exc:
            raise Conflict("the API key prefix is taken", code="api_key_prefix_taken") from exc

    async def find_api_key(self, prefix: str) -> ApiKeyRecord | None:
        async with self._db.session() as session:
            key = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        return _api_key(key) if key is not None else None

    async def list_api_keys(self, tenant_id: uuid.UUID) -> Sequence[ApiKeyRecord]:
        async with self._db.session() as session:
            keys = await session.scalars(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)
            )
            return [_api_key(k) for k in keys]

    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID, now: datetime) -> bool:
        async with self._db.session() as session:
            key = await session.scalar(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.id == key_id)
            )
            if key is None:
                return False
            if key.revoked_at is None:
                key.revoked_at = now
        return True

    async def touch_api_key(self, key_id: uuid.UUID, now: datetime, resolution_s: int) -> None:
        stale = now - timedelta(seconds=resolution_s)
        async with self._db.session() as session:
            await session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale),
                )
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )

    # --- audit ---------------------------------------------------------------------------
    async def list_audit(
        self,
        tenant_id: uuid.UUID,
        *,
        limit: int,
        before_id: int | None = None,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """The tenant's newest entries first; ``before_id`` (an entry id) pages back in time."""
        query = select(AuditEntry).where(AuditEntry.tenant_id == tenant_id)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        query = query.order_by(AuditEntry.id.desc()).limit(limit)
        async with self._db.session() as session:
            return [_audit(e) for e in await session.scalars(query)]

    async def record_audit(self, event: AuditEvent) -> None:
        async with self._db.session() as session:
            session.add(
                AuditEntry(
                    tenant_id=event.tenant_id,
                    principal=event.principal,
                    action=event.action,
                    resource=event.resource,
                    outcome=event.outcome,
                    request_id=request_id_var.get(),
                    ip=event.ip,
                    details=event.details,
                )
            )


def _maybe_utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


def _user(u: User) -> UserRecord:
    return UserRecord(u.id, u.tenant_id, u.email, u.password_hash, Role(u.role), u.is_active)


def _user_info(u: User) -> UserInfo:
    return UserInfo(u.id, u.tenant_id, u.email, Role(u.role), u.is_active, as_utc(u.created_at))


def _audit(e: AuditEntry) -> AuditRecord:
    return AuditRecord(
        e.id, as_utc(e.created_at), e.action, e.outcome, e.principal, e.resource, e.request_id,
        e.ip, dict(e.details or {}),
    )  # fmt: skip


def _refresh(t: RefreshToken) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        t.id, t.family_id, t.user_id, t.tenant_id, as_utc(t.created_at), as_utc(t.expires_at),
        _maybe_utc(t.used_at), _maybe_utc(t.revoked_at),
    )  # fmt: skip


def _api_key(k: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        k.id, k.tenant_id, k.name, k.prefix, k.key_hash, Role(k.role), frozenset(k.scopes),
        k.created_by, as_utc(k.created_at), _maybe_utc(k.expires_at), _maybe_utc(k.last_used_at),
        _maybe_utc(k.revoked_at),
    )  # fmt: skip
