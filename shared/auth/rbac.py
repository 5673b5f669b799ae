"""Roles, permissions and the authenticated principal.

Roles are ordered owner > admin > member > viewer and each includes the permissions of the roles
below it. A principal's effective permissions are its role's, narrowed by its scopes: ``*`` (all
the role allows), ``<resource>:*`` (every action on a resource) or a single permission.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from shared.errors import Forbidden, InvalidInput


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANKS = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Permission(StrEnum):
    KB_READ = "kb:read"  # list KBs and documents, run queries
    KB_WRITE = "kb:write"  # upload, replace and delete documents
    KB_MANAGE = "kb:manage"  # create, configure and delete knowledge bases
    USERS_MANAGE = "users:manage"  # invite users, change roles, deactivate
    API_KEYS_MANAGE = "api_keys:manage"  # create, list and revoke API keys
    SECRETS_MANAGE = "secrets:manage"  # store and delete provider secrets
    AUDIT_READ = "audit:read"
    WORKFLOWS_READ = "workflows:read"  # list workflows and runs, read run details
    WORKFLOWS_RUN = "workflows:run"  # start, cancel, resume runs; approve or reject a step
    WORKFLOWS_MANAGE = "workflows:manage"  # create, update and delete workflow definitions
    TENANT_MANAGE = "tenant:manage"  # rename or delete the tenant, transfer ownership


_GRANTED_AT = {
    Permission.KB_READ: Role.VIEWER,
    Permission.KB_WRITE: Role.MEMBER,
    Permission.KB_MANAGE: Role.ADMIN,
    Permission.USERS_MANAGE: Role.ADMIN,
    Permission.API_KEYS_MANAGE: Role.ADMIN,
    Permission.SECRETS_MANAGE: Role.ADMIN,
    Permission.AUDIT_READ: Role.ADMIN,
    Permission.WORKFLOWS_READ: Role.VIEWER,
    Permission.WORKFLOWS_RUN: Role.MEMBER,
    Permission.WORKFLOWS_MANAGE: Role.MEMBER,
    Permission.TENANT_MANAGE: Role.OWNER,
}
ALL_SCOPES = "*"
PrincipalKind = Literal["user", "api_key"]


def role_permissions(role: Role) -> frozenset[Permission]:
    return frozenset(p for p, lowest in _GRANTED_AT.items() if role.at_least(lowest))


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(f"unknown role {value!r}", code="invalid_role") from None


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (signed in with a password) or an API key, always in one tenant."""

    kind: PrincipalKind
    tenant_id: uuid.UUID
    role: Role
    scopes: frozenset[str]
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if (self.kind == "user") != (self.user_id is not None) or (self.kind == "api_key") != (
            self.api_key_id is not None
        ):
            raise ValueError("a principal carries exactly the id of its kind")

    @property
    def subject(self) -> str:
        """A stable label for audit entries and rate-limit keys: ``user:<id>``/``api_key:<id>``."""
        return f"{self.kind}:{self.user_id or self.api_key_id}"

    def allows(self, permission: Permission | str) -> bool:
        wanted = _known(permission)
        return self.role.at_least(_GRANTED_AT[wanted]) and self.scopes_allow(wanted)

    def scopes_allow(self, permission: Permission | str) -> bool:
        """Whether the scopes (not the role) admit ``permission``; a resource-level grant (e.g.
        a KB's) may stand in for the role, never for the scopes."""
        wanted = _known(permission)
        resource = wanted.value.split(":", 1)[0]
        return bool({ALL_SCOPES, f"{resource}:*", wanted.value} & self.scopes)


# The local operator: whoever runs the ``quarry`` CLI on the machine that holds the data. It acts
# as an owner of the CLI's tenant; audit entries name it ``user:`` + the all-zero UUID.
OPERATOR_ID = uuid.UUID(int=0)


def operator_principal(tenant_id: uuid.UUID) -> Principal:
    return Principal("user", tenant_id, Role.OWNER, frozenset({ALL_SCOPES}), user_id=OPERATOR_ID)


def require(principal: Principal, permission: Permission | str) -> None:
    """Raises ``Forbidden`` unless the principal holds ``permission``."""
    if not principal.allows(permission):
        raise Forbidden(
            f"{principal.kind} lacks permission {str(permission)!r}",
            details={"permission": str(permission)},
        )


def require_grantable(actor: Principal, role: Role, *, current: Role | None = None) -> None:
    """An actor may give (to a user or an API key) only a role up to its own, and may change only
    someone whose current role is not above its own: an admin cannot demote an owner."""
    if role.rank > actor.role.rank or (current is not None and current.rank > actor.role.rank):
        raise Forbidden(
            f"a {actor.role} cannot grant the role {role}",
            code="role_not_grantable",
            details={"role": str(role)},
        )


def validate_scopes(scopes: Iterable[str], role: Role) -> frozenset[str]:
    """Scopes for a new credential: known, non-empty, and within what ``role`` allows."""
    result = frozenset(s.strip() for s in scopes)
    if not result:
        raise InvalidInput("at least one scope is required", code="invalid_scope")
    allowed = role_permissions(role)
    for scope in result:
        if scope == ALL_SCOPES:
            continue
        resource, _, action = scope.partition(":")
        matching = {p for p in Permission if p.value.split(":", 1)[0] == resource}
        if action != "*":
            matching = {p for p in matching if p.value == scope}
        if not matching:
            raise InvalidInput(f"unknown scope {scope!r}", code="invalid_scope")
        if not matching & allowed:
            raise InvalidInput(
                f"scope {scope!r} is beyond the role {role}", code="scope_exceeds_role"
            )
    return result


def _known(permission: Permission | str) -> Permission:
    try:
        return Permission(permission)
    except ValueError:
        # A typo in a route's permission is a bug, not a caller's fault: never a quiet 403.
        raise ValueError(f"unknown permission {permission!r}") from None
