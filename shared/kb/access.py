"""Knowledge-base access on top of tenant roles.

A KB is open by default: the caller's role and scopes decide (``shared.auth.rbac``). A
*restricted* KB is, below the admin role, visible only to users granted a level on it, and the
level replaces the role's KB permissions there: ``read`` (read, query), ``write`` (+ upload,
replace, delete documents) or ``admin`` (+ configure and delete the KB, manage its grants). So a
member can be made admin of one KB, and a member without a grant does not see it at all (404);
too low a level is 403. Scopes still narrow every grant. Admins and owners reach every KB; API
keys hold no grants, so only admin-role keys reach restricted KBs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.auth.rbac import Permission, Principal, Role, require
from shared.db.models import KnowledgeBase
from shared.errors import Forbidden, InvalidInput, NotFound


class KbLevel(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


LEVEL_PERMISSIONS: dict[KbLevel, frozenset[Permission]] = {
    KbLevel.READ: frozenset({Permission.KB_READ}),
    KbLevel.WRITE: frozenset({Permission.KB_READ, Permission.KB_WRITE}),
    KbLevel.ADMIN: frozenset({Permission.KB_READ, Permission.KB_WRITE, Permission.KB_MANAGE}),
}
MAX_GRANTS = 1000


@dataclass(frozen=True)
class KbGrantInfo:
    user_id: uuid.UUID
    level: KbLevel


class KbGrantStore(Protocol):
    async def grant_level(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, user_id: uuid.UUID
    ) -> str | None: ...

    async def granted_kb_ids(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> set[uuid.UUID]: ...

    async def list_grants(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID
    ) -> Sequence[KbGrantInfo]: ...

    async def replace_access(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        restricted: bool,
        grants: Sequence[KbGrantInfo],
    ) -> None:
        """Sets the KB's flag and replaces its grants; ``NotFound`` (``user_not_found``) when a
        grant names no user of the tenant."""
        ...


def bypasses_restrictions(principal: Principal) -> bool:
    return principal.role.at_least(Role.ADMIN)


async def check_kb_access(
    grants: KbGrantStore, principal: Principal, kb: KnowledgeBase, permission: Permission
) -> None:
    if not kb.restricted or bypasses_restrictions(principal):
        require(principal, permission)
        return
    level = (
        await grants.grant_level(kb.tenant_id, kb.id, principal.user_id)
        if principal.user_id is not None
        else None
    )
    if level is None:
        raise NotFound(f"knowledge base {kb.name!r} does not exist", code="kb_not_found")
    if permission not in LEVEL_PERMISSIONS[KbLevel(level)] or not principal.scopes_allow(
        permission
    ):
        raise Forbidden(
            f"your access to knowledge base {kb.name!r} is {level}",
            code="kb_access_denied",
            details={"level": level, "permission": permission.value},
        )


async def visible_kbs(
    grants: KbGrantStore, principal: Principal, kbs: Iterable[KnowledgeBase]
) -> list[KnowledgeBase]:
    kbs = list(kbs)
    if bypasses_restrictions(principal) or not any(kb.restricted for kb in kbs):
        return kbs
    granted = (
        await grants.granted_kb_ids(principal.tenant_id, principal.user_id)
        if principal.user_id is not None
        else set()
    )
    return [kb for kb in kbs if not kb.restricted or kb.id in granted]


def checked_grants(raw: Iterable[tuple[uuid.UUID, str]]) -> list[KbGrantInfo]:
    result: dict[uuid.UUID, KbGrantInfo] = {}
    for user_id, level in raw:
        try:
            result[user_id] = KbGrantInfo(user_id, KbLevel(level))
        except ValueError:
            raise InvalidInput(
                f"unknown level {level!r}: read, write or admin", code="invalid_kb_level"
            ) from None
    if len(result) > MAX_GRANTS:
        raise InvalidInput(f"at most {MAX_GRANTS} grants per KB", code="too_many_grants")
    return list(result.values())
