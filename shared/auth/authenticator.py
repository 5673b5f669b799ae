"""Who is calling: one credential check for the local app and the cloud's Lambda authorizer.

A request carries either an access token (``Authorization: Bearer <jwt>``) or an API key
(``Authorization: Bearer qk_...`` or ``X-API-Key: qk_...``). The Lambda authorizer passes the
resulting principal to the domain functions as its context (flat strings, as API Gateway's simple
response requires); ``principal_from_context`` reads it back there.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from shared.auth.api_keys import KEY_TYPE, ApiKeyService
from shared.auth.rbac import Principal, Role
from shared.auth.tokens import TokenVerifier
from shared.errors import Unauthorized

UNAUTHENTICATED = "unauthenticated"
_BEARER = "bearer "


class Authenticator:
    def __init__(self, tokens: TokenVerifier, api_keys: ApiKeyService) -> None:
        self._tokens = tokens
        self._api_keys = api_keys

    async def authenticate(
        self, authorization: str | None, api_key: str | None = None
    ) -> Principal:
        """The principal of an ``Authorization`` header or an ``X-API-Key`` header; both at once
        is refused (which one would be meant?)."""
        credential = bearer_credential(authorization)
        if api_key and credential:
            raise Unauthorized(
                "send one credential: Authorization or X-API-Key, not both",
                code="ambiguous_credentials",
            )
        if api_key:
            return await self._api_keys.authenticate(api_key.strip())
        if not credential:
            raise Unauthorized(
                "authentication required: send Authorization: Bearer <token> or X-API-Key",
                code=UNAUTHENTICATED,
            )
        if credential.startswith(f"{KEY_TYPE}_"):
            return await self._api_keys.authenticate(credential)
        return self._tokens.verify(credential).principal()


def bearer_credential(authorization: str | None) -> str | None:
    if not authorization:
        return None
    if not authorization[: len(_BEARER)].lower() == _BEARER:
        raise Unauthorized("the Authorization header must use the Bearer scheme", code="bad_scheme")
    return authorization[len(_BEARER) :].strip() or None


def principal_context(principal: Principal) -> dict[str, str]:
    """The principal as an API Gateway authorizer context (string values only)."""
    return {
        "tenant_id": str(principal.tenant_id),
        "principal_kind": principal.kind,
        "principal_id": str(principal.user_id or principal.api_key_id),
        "role": principal.role.value,
        "scopes": " ".join(sorted(principal.scopes)),
    }


def principal_from_context(context: Mapping[str, Any]) -> Principal:
    """The principal the Lambda authorizer put in the request context; ``Unauthorized`` when it is
    missing or malformed (a route wired without the authorizer must not become public)."""
    try:
        kind = str(context["principal_kind"])
        if kind not in ("user", "api_key"):
            raise ValueError(kind)
        principal_id = uuid.UUID(str(context["principal_id"]))
        scopes = frozenset(str(context["scopes"]).split())
        return Principal(
            "user" if kind == "user" else "api_key",
            uuid.UUID(str(context["tenant_id"])),
            Role(str(context["role"])),
            scopes,
            user_id=principal_id if kind == "user" else None,
            api_key_id=principal_id if kind == "api_key" else None,
        )
    except (KeyError, ValueError) as exc:
        raise Unauthorized(
            "no authenticated principal in the request", code=UNAUTHENTICATED
        ) from exc
