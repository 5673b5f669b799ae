"""Tenants and their users: self-service registration, and user management by tenant admins.

Registration creates a tenant with its first user as the owner. Admins add users, change roles
(never above their own, never of someone above them) and deactivate users, which also signs them
out everywhere. Nobody changes their own role or deactivates themselves, so a tenant cannot lose
its last owner by accident. Every change is audited.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.auth.audit import AuditEvent, AuditSink
from shared.auth.passwords import PasswordHasher, check_password_policy
from shared.auth.rbac import Permission, Principal, Role, require, require_grantable
from shared.auth.sessions import SessionService, UserRecord, normalise_email
from shared.errors import Forbidden, InvalidInput, NotFound

MAX_EMAIL_CHARS = 320
MAX_TENANT_NAME_CHARS = 200


@dataclass(frozen=True)
class UserInfo:
    """A user as clients see it (never the password hash)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: Role
    is_active: bool
    created_at: datetime


class TenantUserStore(Protocol):
    async def create_tenant_with_owner(
        self, tenant_name: str, email: str, password_hash: str
    ) -> UserInfo:
        """Raises ``Conflict`` (``tenant_exists`` / ``email_taken``)."""
        ...

    async def create_user(
        self, tenant_id: uuid.UUID, email: str, password_hash: str, role: Role
    ) -> UserRecord: ...

    async def list_users(self, tenant_id: uuid.UUID) -> Sequence[UserInfo]: ...

    async def get_tenant_user(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID
    ) -> UserInfo | None: ...

    async def update_user(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
    ) -> UserInfo | None: ...


class UserService:
    def __init__(
        self,
        store: TenantUserStore,
        passwords: PasswordHasher,
        sessions: SessionService,
        audit: AuditSink,
        *,
        allow_registration: bool = True,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._sessions = sessions
        self._audit = audit
        self._allow_registration = allow_registration

    async def register(
        self, email: str, password: str, tenant_name: str, *, ip: str | None = None
    ) -> UserInfo:
        """A new tenant whose owner is this new user."""
        if not self._allow_registration:
            raise Forbidden("self-service registration is disabled", code="registration_disabled")
        email = _checked_email(email)
        tenant_name = tenant_name.strip()
        if not 1 <= len(tenant_name) <= MAX_TENANT_NAME_CHARS:
            raise InvalidInput(
                f"a tenant name has 1 to {MAX_TENANT_NAME_CHARS} characters",
                code="invalid_tenant_name",
            )
        check_password_policy(password, email=email)
        password_hash = await asyncio.to_thread(self._passwords.hash, password)
        user = await self._store.create_tenant_with_owner(tenant_name, email, password_hash)
        await self._audit.record_audit(
            AuditEvent(
                "tenant.register",
                "success",
                user.tenant_id,
                f"user:{user.id}",
                resource=f"tenant:{user.tenant_id}",
                ip=ip,
            )
        )
        return user

    async def me(self, principal: Principal) -> UserInfo:
        if principal.user_id is None:
            raise NotFound("an API key is not a user", code="not_a_user")
        return await self._get(principal.tenant_id, principal.user_id)

    async def create_user(
        self, actor: Principal, *, email: str, password: str, role: Role
    ) -> UserInfo:
        require(actor, Permission.USERS_MANAGE)
        require_grantable(actor, role)
        email = _checked_email(email)
        check_password_policy(password, email=email)
        password_hash = await asyncio.to_thread(self._passwords.hash, password)
        record = await self._store.create_user(actor.tenant_id, email, password_hash, role)
        await self._record(actor, "user.create", record.id, {"role": role.value})
        return await self._get(actor.tenant_id, record.id)

    async def list_users(self, actor: Principal) -> list[UserInfo]:
        require(actor, Permission.USERS_MANAGE)
        return list(await self._store.list_users(actor.tenant_id))

    async def get_user(self, actor: Principal, user_id: uuid.UUID) -> UserInfo:
        require(actor, Permission.USERS_MANAGE)
        return await self._get(actor.tenant_id, user_id)

    async def update_user(
        self,
        actor: Principal,
        user_id: uuid.UUID,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
    ) -> UserInfo:
        require(actor, Permission.USERS_MANAGE)
        current = await self._get(actor.tenant_id, user_id)
        if actor.user_id == user_id:
            raise Forbidden(
                "you cannot change your own role or deactivate yourself", code="cannot_modify_self"
            )
        # Even a deactivation needs rank: an admin cannot lock out an owner.
        require_grantable(actor, role or current.role, current=current.role)
        updated = await self._store.update_user(
            actor.tenant_id, user_id, role=role, is_active=is_active
        )
        if updated is None:
            raise NotFound(f"user {user_id} does not exist", code="user_not_found")
        if role is not None and role != current.role:
            await self._record(
                actor, "user.role_change", user_id, {"from": current.role.value, "to": role.value}
            )
        if is_active is False and current.is_active:
            await self._sessions.logout_everywhere(user_id, actor.tenant_id)
            await self._record(actor, "user.deactivate", user_id, {})
        elif is_active is True and not current.is_active:
            await self._record(actor, "user.activate", user_id, {})
        return updated

    async def _get(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserInfo:
        user = await self._store.get_tenant_user(tenant_id, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist", code="user_not_found")
        return user

    async def _record(
        self, actor: Principal, action: str, user_id: uuid.UUID, details: dict[str, str]
    ) -> None:
        await self._audit.record_audit(
            AuditEvent(
                action, "success", actor.tenant_id, actor.subject, f"user:{user_id}", details
            )
        )


def _checked_email(email: str) -> str:
    email = normalise_email(email)
    local, _, domain = email.partition("@")
    if not local or "." not in domain or len(email) > MAX_EMAIL_CHARS or " " in email:
        raise InvalidInput("the email address is not valid", code="invalid_email")
    return email
