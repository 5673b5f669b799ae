"""HTTP routes of the auth domain: registration and sign-in, the caller's identity, users,
API keys, provider secrets and the audit log. Only register, token, refresh, logout and the JWKS
answer without a principal; they are throttled per client IP instead."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from functions.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    AuditList,
    AuditOut,
    MeOut,
    RefreshBody,
    RegisterBody,
    SecretList,
    SecretOut,
    SecretPut,
    TokenBody,
    TokenOut,
    UserCreate,
    UserList,
    UserOut,
    UserUpdate,
)
from functions.common.dependencies import (
    ApiKeyManager,
    AuditReader,
    ClientIpDep,
    ContainerDep,
    PrincipalDep,
    SecretManager,
    UserManager,
)
from functions.common.health_routes import domain_health_router
from shared.auth.api_keys import ApiKeyInfo
from shared.auth.rate_limit import RateLimit, check
from shared.auth.sessions import TokenPair, normalise_email
from shared.container import Container

router = APIRouter(tags=["auth"])
router.include_router(domain_health_router("auth"))

MAX_AUDIT_PAGE = 500


async def _throttle(container: Container, who: str, route: str, limit: int) -> None:
    rule = RateLimit(limit, container.settings.auth.rate_limit_window_s)
    await check(container.auth.rate_limiter, principal=who, route=route, rule=rule)


def _tokens(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.access_expires_in_s,
        refresh_expires_at=pair.refresh_expires_at,
    )


def _api_key(info: ApiKeyInfo) -> dict[str, object]:
    return {**vars(info), "scopes": sorted(info.scopes)}


# --- sign-up and sessions -------------------------------------------------------------------
@router.post("/v1/auth/register", status_code=status.HTTP_201_CREATED)
async def register(body: RegisterBody, ip: ClientIpDep, container: ContainerDep) -> UserOut:
    """Creates a tenant and its owner. Sign in with ``POST /v1/auth/token`` afterwards."""
    await _throttle(
        container, f"ip:{ip}", "/v1/auth/register", container.settings.auth.register_rate_limit
    )
    user = await container.auth.users.register(body.email, body.password, body.tenant_name, ip=ip)
    return UserOut.model_validate(user)


@router.post("/v1/auth/token")
async def token(body: TokenBody, ip: ClientIpDep, container: ContainerDep) -> TokenOut:
    # Counted per IP and email: a password-guessing client is stopped after the limit, while a
    # user behind the same NAT can still sign in to another account.
    who = f"ip:{ip}|email:{normalise_email(body.email)}"
    await _throttle(container, who, "/v1/auth/token", container.settings.auth.login_rate_limit)
    return _tokens(await container.auth.sessions.login(body.email, body.password, ip=ip))


@router.post("/v1/auth/refresh")
async def refresh(body: RefreshBody, ip: ClientIpDep, container: ContainerDep) -> TokenOut:
    await _throttle(
        container, f"ip:{ip}", "/v1/auth/refresh", container.settings.auth.login_rate_limit
    )
    return _tokens(await container.auth.sessions.refresh(body.refresh_token))


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshBody, container: ContainerDep) -> Response:
    """Ends the session the refresh token belongs to (its whole rotation family)."""
    await container.auth.sessions.logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/auth/me")
async def me(principal: PrincipalDep, container: ContainerDep) -> MeOut:
    user = await container.auth.users.me(principal) if principal.kind == "user" else None
    return MeOut(
        kind=principal.kind,
        tenant_id=principal.tenant_id,
        role=principal.role,
        scopes=sorted(principal.scopes),
        user=UserOut.model_validate(user) if user is not None else None,
        api_key_id=principal.api_key_id,
    )


@router.get("/.well-known/jwks.json", include_in_schema=False)
async def jwks(container: ContainerDep) -> dict[str, object]:
    """Public verification keys (RS256/ES256 only; an HS256 secret is never published)."""
    return container.auth.key_ring.public_jwks()


# --- users ----------------------------------------------------------------------------------
@router.post("/v1/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, actor: UserManager, container: ContainerDep) -> UserOut:
    user = await container.auth.users.create_user(
        actor, email=body.email, password=body.password, role=body.role
    )
    return UserOut.model_validate(user)


@router.get("/v1/users")
async def list_users(actor: UserManager, container: ContainerDep) -> UserList:
    users = await container.auth.users.list_users(actor)
    return UserList(items=[UserOut.model_validate(u) for u in users])


@router.get("/v1/users/{user_id}")
async def get_user(user_id: uuid.UUID, actor: UserManager, container: ContainerDep) -> UserOut:
    return UserOut.model_validate(await container.auth.users.get_user(actor, user_id))


@router.patch("/v1/users/{user_id}")
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, actor: UserManager, container: ContainerDep
) -> UserOut:
    user = await container.auth.users.update_user(
        actor, user_id, role=body.role, is_active=body.is_active
    )
    return UserOut.model_validate(user)


# --- API keys -------------------------------------------------------------------------------
@router.post("/v1/api-keys", status_code=status.HTTP_201_CREATED)
async def create_api_key(
    body: ApiKeyCreate, actor: ApiKeyManager, container: ContainerDep
) -> ApiKeyCreated:
    ttl_s = body.expires_in_days * 86400 if body.expires_in_days is not None else None
    created = await container.auth.api_keys.create(
        actor, name=body.name, scopes=body.scopes, role=body.role, ttl_s=ttl_s
    )
    return ApiKeyCreated.model_validate({**_api_key(created.info), "key": created.key})


@router.get("/v1/api-keys")
async def list_api_keys(actor: ApiKeyManager, container: ContainerDep) -> ApiKeyList:
    keys = await container.auth.api_keys.list(actor)
    return ApiKeyList(items=[ApiKeyOut.model_validate(_api_key(k)) for k in keys])


@router.delete("/v1/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(
    key_id: uuid.UUID, actor: ApiKeyManager, container: ContainerDep
) -> Response:
    await container.auth.api_keys.revoke(actor, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- provider secrets -----------------------------------------------------------------------
@router.put("/v1/secrets/{name}")
async def put_secret(
    name: str, body: SecretPut, actor: SecretManager, container: ContainerDep
) -> SecretOut:
    """Stores the value encrypted. No endpoint ever returns it."""
    return SecretOut.model_validate(
        await container.auth.provider_secrets.put(actor, name, body.value)
    )


@router.get("/v1/secrets")
async def list_secrets(actor: SecretManager, container: ContainerDep) -> SecretList:
    secrets = await container.auth.provider_secrets.list(actor)
    return SecretList(items=[SecretOut.model_validate(s) for s in secrets])


@router.delete("/v1/secrets/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_secret(name: str, actor: SecretManager, container: ContainerDep) -> Response:
    await container.auth.provider_secrets.delete(actor, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- audit log ------------------------------------------------------------------------------
@router.get("/v1/audit")
async def audit_log(
    actor: AuditReader,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
    before_id: Annotated[int | None, Query(ge=1)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditList:
    """Newest first; page back with ``before_id`` = the previous page's ``next_before_id``."""
    entries = await container.auth.repository.list_audit(
        actor.tenant_id, limit=limit, before_id=before_id, action=action
    )
    return AuditList(
        items=[AuditOut.model_validate(e) for e in entries],
        next_before_id=entries[-1].id if len(entries) == limit else None,
    )
