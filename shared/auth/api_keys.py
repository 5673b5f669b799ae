"""API keys: ``qk_<prefix>_<secret>``, shown once at creation.

The 8-character prefix finds the row; the stored hash is HMAC-SHA256 of the whole key under a
server-side pepper, so a leaked table alone cannot be used to check guesses. The secret has 256
random bits, so a fast keyed hash suffices (no password-grade hashing per request). A key's
state (revoked, expired) is only revealed to a caller that presented the right secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from shared.auth.audit import AuditEvent, AuditSink
from shared.auth.rbac import Permission, Principal, Role, require, require_grantable
from shared.auth.rbac import validate_scopes as _validate_scopes
from shared.errors import Conflict, InvalidInput, NotFound, Unauthorized

KEY_TYPE = "qk"
PREFIX_CHARS = 8
SECRET_BYTES = 32
MIN_PEPPER_BYTES = 32
PREFIX_ATTEMPTS = 3
LAST_USED_RESOLUTION_S = 60  # last_used_at is written at most this often per key
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_KEY = re.compile(rf"^{KEY_TYPE}_([a-z0-9]{{{PREFIX_CHARS}}})_([A-Za-z0-9_-]{{43}})$")
INVALID_API_KEY = "invalid_api_key"


@dataclass(frozen=True)
class ApiKeyRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    key_hash: str
    role: Role
    scopes: frozenset[str]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class ApiKeyInfo:
    """What listing shows: never the secret, nor its hash."""

    id: uuid.UUID
    name: str
    prefix: str
    role: Role
    scopes: frozenset[str]
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, r: ApiKeyRecord) -> ApiKeyInfo:
        return cls(
            r.id, r.name, r.prefix, r.role, r.scopes, r.created_by, r.created_at,
            r.expires_at, r.last_used_at, r.revoked_at,
        )  # fmt: skip


@dataclass(frozen=True)
class CreatedApiKey:
    key: str  # the only time the full key exists outside the caller
    info: ApiKeyInfo


class ApiKeyStore(Protocol):
    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Raises ``Conflict`` when the prefix is taken."""
        ...

    async def find_api_key(self, prefix: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self, tenant_id: uuid.UUID) -> Sequence[ApiKeyRecord]: ...

    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID, now: datetime) -> bool:
        """False when the tenant has no such key."""
        ...

    async def touch_api_key(self, key_id: uuid.UUID, now: datetime, resolution_s: int) -> None:
        """Sets last_used_at to ``now`` unless it is younger than ``resolution_s``."""
        ...


class ApiKeyService:
    def __init__(
        self,
        store: ApiKeyStore,
        audit: AuditSink,
        *,
        pepper: bytes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ValueError(f"the API key pepper must be at least {MIN_PEPPER_BYTES} bytes")
        self._store = store
        self._audit = audit
        self._pepper = pepper
        self._clock = clock

    def hash_key(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()

    async def create(
        self,
        actor: Principal,
        *,
        name: str,
        scopes: Iterable[str],
        role: Role | None = None,
        ttl_s: int | None = None,
    ) -> CreatedApiKey:
        """A new key of the actor's tenant with ``role`` (default: the actor's; never above it)
        narrowed to ``scopes``; it never expires when ``ttl_s`` is None."""
        require(actor, Permission.API_KEYS_MANAGE)
        role = role or actor.role
        require_grantable(actor, role)
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidInput("an API key name has 1 to 100 characters", code="invalid_name")
        if ttl_s is not None and ttl_s < 60:
            raise InvalidInput("an API key lives at least 60 s", code="invalid_ttl")
        valid_scopes = _validate_scopes(scopes, role)
        now = self._clock()
        for attempt in range(PREFIX_ATTEMPTS):
            prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_CHARS))
            key = f"{KEY_TYPE}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
            record = ApiKeyRecord(
                id=uuid.uuid4(),
                tenant_id=actor.tenant_id,
                name=name,
                prefix=prefix,
                key_hash=self.hash_key(key),
                role=role,
                scopes=valid_scopes,
                created_by=actor.subject,
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_s) if ttl_s is not None else None,
            )
            try:
                await self._store.add_api_key(record)
                break
            except Conflict:  # a prefix already in use (36^8 of them): draw another
                if attempt == PREFIX_ATTEMPTS - 1:
                    raise
        await self._audit_change(actor, "api_key.create", record.id, {"prefix": prefix})
        return CreatedApiKey(key, ApiKeyInfo.of(record))

    async def authenticate(self, presented: str) -> Principal:
        match = _KEY.match(presented or "")
        record = await self._store.find_api_key(match.group(1)) if match else None
        # Hash and compare even when nothing matched, so timing does not tell which step failed.
        expected = record.key_hash if record is not None else "0" * 64
        if not hmac.compare_digest(self.hash_key(presented or ""), expected) or record is None:
            raise Unauthorized("the API key is not valid", code=INVALID_API_KEY)
        now = self._clock()
        if record.revoked_at is not None:
            raise Unauthorized("the API key has been revoked", code="api_key_revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthorized("the API key has expired", code="api_key_expired")
        stale = now - timedelta(seconds=LAST_USED_RESOLUTION_S)
        if record.last_used_at is None or record.last_used_at < stale:  # no write per request
            await self._store.touch_api_key(record.id, now, LAST_USED_RESOLUTION_S)
        return Principal(
            "api_key", record.tenant_id, record.role, record.scopes, api_key_id=record.id
        )

    async def list(self, actor: Principal) -> list[ApiKeyInfo]:
        require(actor, Permission.API_KEYS_MANAGE)
        return [ApiKeyInfo.of(r) for r in await self._store.list_api_keys(actor.tenant_id)]

    async def revoke(self, actor: Principal, key_id: uuid.UUID) -> None:
        require(actor, Permission.API_KEYS_MANAGE)
        if not await self._store.revoke_api_key(actor.tenant_id, key_id, self._clock()):
            raise NotFound(f"API key {key_id} does not exist", code="api_key_not_found")
        await self._audit_change(actor, "api_key.revoke", key_id, {})

    async def _audit_change(
        self, actor: Principal, action: str, key_id: uuid.UUID, details: dict[str, str]
    ) -> None:
        await self._audit.record_audit(
            AuditEvent(
                action, "success", actor.tenant_id, actor.subject, f"api_key:{key_id}", details
            )
        )
