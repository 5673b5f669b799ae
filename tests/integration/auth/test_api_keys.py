"""API keys on both databases: only a peppered hash stored, lookup, revocation, expiry."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from shared.auth.api_keys import ApiKeyService
from shared.auth.rbac import Permission, Role
from shared.auth.sessions import UserRecord
from shared.db.auth_repository import AuthRepository
from shared.db.engine import Database
from shared.db.models import ApiKey, as_utc
from shared.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from tests.integration.auth.conftest import audit_entries, principal_of

pytestmark = pytest.mark.integration

PEPPER = b"p" * 32
NewUser = Callable[..., Coroutine[Any, Any, UserRecord]]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(repository: AuthRepository, clock: Clock) -> ApiKeyService:
    return ApiKeyService(repository, repository, pepper=PEPPER, clock=clock)


async def stored(database: Database, key_id: uuid.UUID) -> ApiKey:
    async with database.session() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id))
    assert row is not None
    return row


async def test_a_new_key_authenticates_and_only_its_hash_is_stored(
    keys: ApiKeyService, new_user: NewUser, database: Database
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    created = await keys.create(admin, name="ci", scopes=["kb:read", "kb:write"], role=Role.MEMBER)

    assert re.fullmatch(r"qk_[a-z0-9]{8}_[A-Za-z0-9_-]{43}", created.key)
    assert created.key.split("_", 2)[1] == created.info.prefix
    row = await stored(database, created.info.id)
    assert row.key_hash == keys.hash_key(created.key)
    secret = created.key.split("_", 2)[2]
    assert secret not in row.key_hash
    assert all(secret not in str(v) for v in vars(row).values())

    principal = await keys.authenticate(created.key)
    assert principal.kind == "api_key"
    assert principal.api_key_id == created.info.id
    assert principal.tenant_id == admin.tenant_id
    assert principal.role == Role.MEMBER
    assert principal.allows(Permission.KB_WRITE)
    assert not principal.allows(Permission.KB_MANAGE)


async def test_wrong_malformed_and_unknown_keys_are_refused(
    keys: ApiKeyService, new_user: NewUser
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    key = (await keys.create(admin, name="k", scopes=["*"])).key
    prefix = key.split("_", 2)[1]
    candidates = [
        f"qk_{prefix}_{'A' * 43}",  # right prefix, wrong secret
        key[:-1] + ("A" if key[-1] != "A" else "B"),
        f"qk_zzzzzzzz_{key.split('_', 2)[2]}",  # unknown prefix
        "qk_short_abc",
        "",
        "Bearer " + key,
    ]
    for candidate in candidates:
        with pytest.raises(Unauthorized) as refused:
            await keys.authenticate(candidate)
        assert refused.value.code == "invalid_api_key", candidate


async def test_a_revoked_key_is_refused_and_listing_never_shows_secrets(
    keys: ApiKeyService, new_user: NewUser, database: Database
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    created = await keys.create(admin, name="to-revoke", scopes=["kb:read"])
    await keys.revoke(admin, created.info.id)
    await keys.revoke(admin, created.info.id)  # idempotent

    with pytest.raises(Unauthorized) as refused:
        await keys.authenticate(created.key)
    assert refused.value.code == "api_key_revoked"
    listed = await keys.list(admin)
    assert [k.id for k in listed] == [created.info.id]
    assert listed[0].revoked_at is not None
    assert not hasattr(listed[0], "key_hash")
    assert created.key.split("_", 2)[2] not in repr(listed)
    actions = [e.action for e in await audit_entries(database, admin.tenant_id)]
    assert actions == ["api_key.create", "api_key.revoke", "api_key.revoke"]


async def test_an_expired_key_is_refused(
    keys: ApiKeyService, new_user: NewUser, clock: Clock
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    created = await keys.create(admin, name="short", scopes=["kb:read"], ttl_s=3600)
    assert (await keys.authenticate(created.key)).api_key_id == created.info.id

    clock.now += timedelta(seconds=3600)
    with pytest.raises(Unauthorized) as refused:
        await keys.authenticate(created.key)
    assert refused.value.code == "api_key_expired"


async def test_last_used_is_recorded_at_most_once_a_minute(
    keys: ApiKeyService, new_user: NewUser, clock: Clock, database: Database
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    created = await keys.create(admin, name="used", scopes=["kb:read"])
    assert (await stored(database, created.info.id)).last_used_at is None
    start = clock.now

    await keys.authenticate(created.key)
    clock.now = start + timedelta(seconds=30)
    await keys.authenticate(created.key)
    first = (await stored(database, created.info.id)).last_used_at
    assert first is not None
    assert as_utc(first) == start

    clock.now = start + timedelta(seconds=61)
    await keys.authenticate(created.key)
    later = (await stored(database, created.info.id)).last_used_at
    assert later is not None
    assert as_utc(later) == start + timedelta(seconds=61)


async def test_permissions_and_tenants_bound_key_management(
    keys: ApiKeyService,
    new_user: NewUser,
    new_tenant: Callable[[], Coroutine[Any, Any, uuid.UUID]],
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    member = principal_of(await new_user(Role.MEMBER))
    with pytest.raises(Forbidden):
        await keys.create(member, name="nope", scopes=["kb:read"])
    with pytest.raises(Forbidden) as above:
        await keys.create(admin, name="owner key", scopes=["*"], role=Role.OWNER)
    assert above.value.code == "role_not_grantable"
    with pytest.raises(InvalidInput) as scope:
        await keys.create(admin, name="x", scopes=["tenant:manage"])
    assert scope.value.code == "scope_exceeds_role"

    created = await keys.create(admin, name="mine", scopes=["kb:*"])
    other_admin = principal_of(await new_user(Role.ADMIN, tenant=await new_tenant()))
    with pytest.raises(NotFound):
        await keys.revoke(other_admin, created.info.id)
    assert await keys.list(other_admin) == []
    assert (await keys.authenticate(created.key)).tenant_id == admin.tenant_id
