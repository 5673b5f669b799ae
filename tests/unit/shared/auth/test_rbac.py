"""Roles, permissions and scopes: the full matrix."""

from __future__ import annotations

import uuid

import pytest

from shared.auth.rbac import (
    Permission,
    Principal,
    Role,
    parse_role,
    require,
    require_grantable,
    role_permissions,
    validate_scopes,
)
from shared.errors import Forbidden, InvalidInput

pytestmark = pytest.mark.unit

P = Permission
# What each role may do (with scope "*"); everything else is refused.
MATRIX: dict[Role, set[Permission]] = {
    Role.VIEWER: {P.KB_READ, P.WORKFLOWS_READ},
    Role.MEMBER: {P.KB_READ, P.KB_WRITE, P.WORKFLOWS_READ, P.WORKFLOWS_RUN, P.WORKFLOWS_MANAGE},
    Role.ADMIN: {
        P.KB_READ, P.KB_WRITE, P.KB_MANAGE, P.USERS_MANAGE, P.API_KEYS_MANAGE,
        P.SECRETS_MANAGE, P.AUDIT_READ, P.WORKFLOWS_READ, P.WORKFLOWS_RUN, P.WORKFLOWS_MANAGE,
    },
    Role.OWNER: set(Permission),
}  # fmt: skip


def user(role: Role, scopes: frozenset[str] = frozenset({"*"})) -> Principal:
    return Principal("user", uuid.uuid4(), role, scopes, user_id=uuid.uuid4())


def api_key(role: Role, *scopes: str) -> Principal:
    return Principal("api_key", uuid.uuid4(), role, frozenset(scopes), api_key_id=uuid.uuid4())


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_the_role_matrix(role: Role, permission: Permission) -> None:
    allowed = permission in MATRIX[role]
    assert user(role).allows(permission) is allowed
    assert (permission in role_permissions(role)) is allowed
    if allowed:
        require(user(role), permission)
        require(user(role), permission.value)  # plain strings work too
    else:
        with pytest.raises(Forbidden) as refused:
            require(user(role), permission)
        assert refused.value.status_code == 403
        assert refused.value.details == {"permission": permission.value}


def test_roles_are_ordered() -> None:
    assert [r.rank for r in (Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.OWNER)] == [0, 1, 2, 3]
    assert Role.OWNER.at_least(Role.ADMIN)
    assert not Role.MEMBER.at_least(Role.ADMIN)
    assert parse_role("admin") is Role.ADMIN
    with pytest.raises(InvalidInput):
        parse_role("root")


def test_scopes_narrow_a_role_and_never_widen_it() -> None:
    reader = api_key(Role.ADMIN, "kb:read")
    assert reader.allows(P.KB_READ)
    assert not reader.allows(P.KB_WRITE)
    kb_all = api_key(Role.MEMBER, "kb:*")
    assert kb_all.allows(P.KB_WRITE)
    assert not kb_all.allows(P.KB_MANAGE)  # the role still caps it
    assert not api_key(Role.VIEWER, "kb:write").allows(P.KB_WRITE)
    assert not api_key(Role.OWNER).allows(P.KB_READ)  # no scopes, no access
    assert api_key(Role.OWNER, "*").allows(P.TENANT_MANAGE)


def test_principals_carry_the_id_of_their_kind() -> None:
    assert user(Role.VIEWER).subject.startswith("user:")
    assert api_key(Role.VIEWER, "*").subject.startswith("api_key:")
    with pytest.raises(ValueError, match="exactly the id of its kind"):
        Principal("user", uuid.uuid4(), Role.VIEWER, frozenset(), api_key_id=uuid.uuid4())
    with pytest.raises(ValueError, match="exactly the id of its kind"):
        Principal("api_key", uuid.uuid4(), Role.VIEWER, frozenset(), user_id=uuid.uuid4())


def test_an_unknown_permission_is_a_bug_not_a_403() -> None:
    with pytest.raises(ValueError, match="unknown permission"):
        require(user(Role.OWNER), "kb:wirte")


@pytest.mark.parametrize(
    ("actor", "role", "current", "allowed"),
    [
        (Role.OWNER, Role.OWNER, None, True),
        (Role.ADMIN, Role.ADMIN, Role.MEMBER, True),
        (Role.ADMIN, Role.OWNER, Role.ADMIN, False),  # cannot grant above its own role
        (Role.ADMIN, Role.VIEWER, Role.OWNER, False),  # cannot demote an owner
        (Role.MEMBER, Role.VIEWER, None, True),
    ],
)
def test_granting_roles(actor: Role, role: Role, current: Role | None, allowed: bool) -> None:
    if allowed:
        require_grantable(user(actor), role, current=current)
    else:
        with pytest.raises(Forbidden) as refused:
            require_grantable(user(actor), role, current=current)
        assert refused.value.code == "role_not_grantable"


def test_validating_scopes_for_a_new_credential() -> None:
    assert validate_scopes([" kb:read ", "kb:write"], Role.MEMBER) == {"kb:read", "kb:write"}
    assert validate_scopes(["*"], Role.VIEWER) == {"*"}
    assert validate_scopes(["kb:*"], Role.VIEWER) == {"kb:*"}
    for scopes, code in [
        ([], "invalid_scope"),
        (["kb:delete"], "invalid_scope"),
        (["billing:*"], "invalid_scope"),
        (["users:manage"], "scope_exceeds_role"),
        (["secrets:*"], "scope_exceeds_role"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            validate_scopes(scopes, Role.MEMBER)
        assert refused.value.code == code, scopes
