"""Password login, refresh and logout through SessionService on both databases."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from sqlalchemy import update

from shared.auth.keys import KeyRing, SigningKey
from shared.auth.passwords import PasswordHasher
from shared.auth.rbac import Role
from shared.auth.refresh import RefreshTokenService
from shared.auth.sessions import SessionService, UserRecord
from shared.auth.tokens import TokenIssuer, TokenVerifier
from shared.db.auth_repository import AuthRepository
from shared.db.engine import Database
from shared.db.models import User
from shared.errors import Unauthorized
from tests.integration.auth.conftest import audit_entries

pytestmark = pytest.mark.integration

PASSWORD = "Correct-Horse-42"
KEYS = KeyRing(SigningKey.hs256("s" * 32))
NewUser = Callable[..., Coroutine[Any, Any, UserRecord]]


def cheap_hasher(time_cost: int = 1) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost_kib=8, parallelism=1)


def make_sessions(repository: AuthRepository, hasher: PasswordHasher) -> SessionService:
    issuer = TokenIssuer(KEYS, issuer="quarry", audience="quarry-api")
    refresh = RefreshTokenService(repository, repository, ttl_s=3600)
    return SessionService(repository, hasher, issuer, refresh, repository)


VERIFIER = TokenVerifier(KEYS, issuer="quarry", audience="quarry-api")


async def test_login_gives_a_working_pair_and_refresh_rotates_it(
    repository: AuthRepository, new_user: NewUser, database: Database
) -> None:
    hasher = cheap_hasher()
    user = await new_user(Role.ADMIN, hasher.hash(PASSWORD))
    sessions = make_sessions(repository, hasher)

    pair = await sessions.login(f"  {user.email.upper()} ", PASSWORD, ip="203.0.113.9")
    claims = VERIFIER.verify(pair.access_token)
    assert (claims.user_id, claims.tenant_id, claims.role) == (user.id, user.tenant_id, Role.ADMIN)
    assert pair.token_type == "Bearer"
    assert pair.access_expires_in_s == 900

    # A role change shows in the next access token.
    async with database.session() as session:
        await session.execute(update(User).where(User.id == user.id).values(role="viewer"))
    refreshed = await sessions.refresh(pair.refresh_token)
    assert VERIFIER.verify(refreshed.access_token).role == Role.VIEWER
    assert refreshed.refresh_token != pair.refresh_token

    await sessions.logout(refreshed.refresh_token)
    with pytest.raises(Unauthorized) as after_logout:
        await sessions.refresh(refreshed.refresh_token)
    assert after_logout.value.code == "refresh_reuse"
    events = await audit_entries(database, user.tenant_id)
    assert [(e.action, e.outcome) for e in events][:1] == [("auth.login", "success")]


@pytest.mark.parametrize("case", ["wrong_password", "unknown_email", "inactive", "too_long"])
async def test_failed_logins_look_alike(
    repository: AuthRepository, new_user: NewUser, database: Database, case: str
) -> None:
    hasher = cheap_hasher()
    user = await new_user(Role.MEMBER, hasher.hash(PASSWORD))
    if case == "inactive":
        async with database.session() as session:
            await session.execute(update(User).where(User.id == user.id).values(is_active=False))
    email = "nobody@example.com" if case == "unknown_email" else user.email
    password = {"wrong_password": "Wrong-password-1", "too_long": PASSWORD * 100}.get(
        case, PASSWORD
    )

    with pytest.raises(Unauthorized) as refused:
        await make_sessions(repository, hasher).login(email, password)

    assert refused.value.code == "invalid_credentials"
    assert refused.value.status_code == 401


async def test_login_upgrades_an_outdated_hash(
    repository: AuthRepository, new_user: NewUser
) -> None:
    old_hash = cheap_hasher(time_cost=1).hash(PASSWORD)
    user = await new_user(Role.MEMBER, old_hash)
    stronger = cheap_hasher(time_cost=2)

    await make_sessions(repository, stronger).login(user.email, PASSWORD)

    stored = await repository.get_user(user.id)
    assert stored is not None
    assert stored.password_hash != old_hash
    assert "t=2" in stored.password_hash
    assert stronger.verify(stored.password_hash, PASSWORD).ok


async def test_a_deactivated_user_cannot_refresh(
    repository: AuthRepository, new_user: NewUser, database: Database
) -> None:
    hasher = cheap_hasher()
    user = await new_user(Role.MEMBER, hasher.hash(PASSWORD))
    sessions = make_sessions(repository, hasher)
    pair = await sessions.login(user.email, PASSWORD)
    async with database.session() as session:
        await session.execute(update(User).where(User.id == user.id).values(is_active=False))

    with pytest.raises(Unauthorized) as refused:
        await sessions.refresh(pair.refresh_token)
    assert refused.value.code == "account_inactive"
    assert await sessions.logout_everywhere(user.id, user.tenant_id) == 0  # already revoked
