"""Refresh tokens on both databases: rotation, reuse detection, expiry and revocation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from shared.auth.refresh import RefreshTokenService, hash_refresh_token
from shared.auth.sessions import UserRecord
from shared.db.auth_repository import AuthRepository
from shared.db.engine import Database
from shared.db.models import RefreshToken
from shared.errors import Unauthorized
from tests.integration.auth.conftest import audit_entries

pytestmark = pytest.mark.integration

TTL_S = 3600
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
def service(repository: AuthRepository, clock: Clock) -> RefreshTokenService:
    return RefreshTokenService(repository, repository, ttl_s=TTL_S, clock=clock)


async def test_rotation_issues_a_successor_and_consumes_the_token(
    service: RefreshTokenService, new_user: NewUser, database: Database
) -> None:
    user = await new_user()
    first = await service.issue(user.id, user.tenant_id)
    rotation = await service.rotate(first.token)

    assert rotation.user_id == user.id
    assert rotation.tenant_id == user.tenant_id
    assert rotation.refresh.family_id == first.family_id
    assert rotation.refresh.token != first.token
    second = await service.rotate(rotation.refresh.token)  # the successor works once too
    assert second.refresh.family_id == first.family_id

    async with database.session() as session:
        rows = (
            await session.scalars(
                select(RefreshToken).where(RefreshToken.family_id == first.family_id)
            )
        ).all()
    assert len(rows) == 3
    assert {r.token_hash for r in rows} == {
        hash_refresh_token(t) for t in (first.token, rotation.refresh.token, second.refresh.token)
    }
    assert all(first.token not in r.token_hash for r in rows)  # only hashes are stored
    assert sum(r.used_at is not None for r in rows) == 2


async def test_reusing_a_used_token_revokes_the_whole_family(
    service: RefreshTokenService, new_user: NewUser, database: Database
) -> None:
    user = await new_user()
    first = await service.issue(user.id, user.tenant_id)
    other_session = await service.issue(user.id, user.tenant_id)
    successor = (await service.rotate(first.token)).refresh

    with pytest.raises(Unauthorized) as reuse:
        await service.rotate(first.token)  # a thief replays the stolen, already used token
    assert reuse.value.code == "refresh_reuse"
    with pytest.raises(Unauthorized) as revoked:
        await service.rotate(successor.token)  # the legitimate holder is signed out as well
    assert revoked.value.code == "refresh_reuse"

    # Another login (another family) is untouched.
    assert (await service.rotate(other_session.token)).user_id == user.id
    events = await audit_entries(database, user.tenant_id)
    reuse_events = [e for e in events if e.action == "refresh_token.reuse"]
    assert reuse_events[0].outcome == "denied"
    assert reuse_events[0].resource == f"refresh_family:{first.family_id}"
    assert reuse_events[0].details["revoked"] == 2


async def test_concurrent_rotations_of_one_token_let_only_one_through(
    service: RefreshTokenService, new_user: NewUser
) -> None:
    user = await new_user()
    token = (await service.issue(user.id, user.tenant_id)).token

    results = await asyncio.gather(
        *(service.rotate(token) for _ in range(4)), return_exceptions=True
    )

    successes = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, Unauthorized)]
    assert len(successes) == 1
    assert len(failures) == 3
    assert {f.code for f in failures} == {"refresh_reuse"}


async def test_expired_unknown_and_malformed_tokens_are_refused(
    service: RefreshTokenService, new_user: NewUser, clock: Clock
) -> None:
    user = await new_user()
    issued = await service.issue(user.id, user.tenant_id)
    clock.now += timedelta(seconds=TTL_S + 1)

    with pytest.raises(Unauthorized) as expired:
        await service.rotate(issued.token)
    assert expired.value.code == "refresh_expired"
    for bad in ("", "x" * 1000, "not-a-token-we-issued"):
        with pytest.raises(Unauthorized) as invalid:
            await service.rotate(bad)
        assert invalid.value.code == "refresh_invalid"


async def test_logout_revokes_the_session_and_logout_all_every_session(
    service: RefreshTokenService, new_user: NewUser, database: Database
) -> None:
    user, bystander = await new_user(), await new_user()
    one = await service.issue(user.id, user.tenant_id)
    two = await service.issue(user.id, user.tenant_id)
    kept = await service.issue(bystander.id, bystander.tenant_id)

    await service.revoke(one.token)
    with pytest.raises(Unauthorized):
        await service.rotate(one.token)
    two = (await service.rotate(two.token)).refresh

    # the used token and its live successor (one's family is already revoked)
    assert await service.revoke_all_for_user(user.id, user.tenant_id) == 2
    with pytest.raises(Unauthorized):
        await service.rotate(two.token)
    assert (await service.rotate(kept.token)).user_id == bystander.id
    await service.revoke("never-issued")  # nothing to do, no error
    actions = [e.action for e in await audit_entries(database, user.tenant_id)]
    assert "refresh_token.revoke_all" in actions


async def test_tokens_disappear_with_their_user(
    service: RefreshTokenService, new_user: NewUser, database: Database
) -> None:
    from shared.db.models import User

    user = await new_user()
    issued = await service.issue(user.id, user.tenant_id)
    async with database.session() as session:
        await session.delete(await session.get(User, user.id))
    with pytest.raises(Unauthorized) as refused:
        await service.rotate(issued.token)
    assert refused.value.code == "refresh_invalid"
    assert isinstance(user.id, uuid.UUID)
