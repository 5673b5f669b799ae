"""Access tokens: short-lived JWTs signed with the key ring's active key.

Verification trusts nothing in the token before the signature checks out: the header's ``kid``
picks a key, and that key's one algorithm is the only one accepted, so ``alg: none``, an HS256
token made with an RS256 public key, or any other algorithm swap is refused. ``iss``, ``aud``,
``exp``, ``nbf`` and ``iat`` are required and checked with a small leeway for clock skew.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from shared.auth.keys import KeyRing
from shared.auth.rbac import ALL_SCOPES, Principal, Role
from shared.errors import Unauthorized

log = logging.getLogger(__name__)

DEFAULT_ACCESS_TTL_S = 15 * 60
DEFAULT_LEEWAY_S = 30
MAX_TOKEN_CHARS = 8192
TOKEN_EXPIRED = "token_expired"  # noqa: S105 (an error code)
TOKEN_INVALID = "token_invalid"  # noqa: S105 (an error code)
_REQUIRED = ["iss", "aud", "sub", "exp", "nbf", "iat", "jti"]

# PyJWT's exception -> the reason kept in the error's details (for logs and tests).
_REASONS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.InvalidIssuerError, "issuer"),
    (jwt.InvalidSignatureError, "signature"),
    (jwt.MissingRequiredClaimError, "claims"),
    (jwt.InvalidIssuedAtError, "claims"),
    (jwt.InvalidAlgorithmError, "algorithm"),
    (jwt.InvalidKeyError, "key"),
]


@dataclass(frozen=True)
class AccessToken:
    token: str
    jti: str
    expires_at: datetime
    expires_in_s: int


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    scopes: frozenset[str]
    jti: str
    issued_at: datetime
    expires_at: datetime

    def principal(self) -> Principal:
        return Principal("user", self.tenant_id, self.role, self.scopes, user_id=self.user_id)


class TokenIssuer:
    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl_s: int = DEFAULT_ACCESS_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s
        self._clock = clock

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        role: Role,
        scopes: Iterable[str] = (ALL_SCOPES,),
    ) -> AccessToken:
        now = int(self._clock())
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "tid": str(tenant_id),
            "role": role.value,
            "scopes": sorted(set(scopes)),
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl_s,
            "jti": jti,
        }
        key = self._keys.active
        token = jwt.encode(claims, key.key, algorithm=key.algorithm, headers={"kid": key.kid})
        expires_at = datetime.fromtimestamp(now + self._ttl_s, UTC)
        return AccessToken(token, jti, expires_at, self._ttl_s)


class TokenVerifier:
    def __init__(
        self, keys: KeyRing, *, issuer: str, audience: str, leeway_s: int = DEFAULT_LEEWAY_S
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s

    def verify(self, token: str) -> AccessClaims:
        """The token's claims; ``Unauthorized`` (``token_expired`` or ``token_invalid``, the
        reason in ``details``) for anything but a valid, current token of this issuer."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise _invalid("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed") from None
        kid = header.get("kid")
        key = self._keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise _invalid("unknown_key")
        if header.get("alg") != key.algorithm:
            raise _invalid("algorithm")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired", code=TOKEN_EXPIRED) from None
        except jwt.PyJWTError as exc:
            reason = next((r for kind, r in _REASONS if isinstance(exc, kind)), "malformed")
            raise _invalid(reason) from None
        return _claims(claims)


def _claims(claims: dict[str, Any]) -> AccessClaims:
    try:
        scopes = claims.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise TypeError("scopes must be a list of strings")
        return AccessClaims(
            user_id=uuid.UUID(str(claims["sub"])),
            tenant_id=uuid.UUID(str(claims["tid"])),
            role=Role(claims["role"]),
            scopes=frozenset(scopes),
            jti=str(claims["jti"]),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (KeyError, TypeError, ValueError):
        raise _invalid("claims") from None


def _invalid(reason: str) -> Unauthorized:
    log.info("access token refused: %s", reason, extra={"reason": reason})
    return Unauthorized(
        "the access token is not valid", code=TOKEN_INVALID, details={"reason": reason}
    )
