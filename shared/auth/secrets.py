"""Provider secrets (e.g. a tenant's LLM provider API key): stored encrypted, never listed.

Each value is envelope-encrypted by the ``SecretCipher`` with ``{tenant, name}`` as its context,
so a ciphertext only decrypts in the row it was written for. ``get`` is for internal use (calling
the provider); nothing facing a client returns a value, only names and timestamps.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from shared.auth.audit import AuditEvent, AuditSink
from shared.auth.rbac import Permission, Principal, require
from shared.errors import InvalidInput, NotFound
from shared.ports.secret_cipher import SecretCipher

SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_SECRET_BYTES = 16 * 1024


@dataclass(frozen=True)
class SecretInfo:
    name: str
    created_at: datetime
    updated_at: datetime


class SecretStore(Protocol):
    async def put_secret(
        self, tenant_id: uuid.UUID, name: str, ciphertext: bytes, now: datetime
    ) -> SecretInfo:
        """Creates the secret or replaces its ciphertext."""
        ...

    async def get_secret_ciphertext(self, tenant_id: uuid.UUID, name: str) -> bytes | None: ...

    async def list_secrets(self, tenant_id: uuid.UUID) -> Sequence[SecretInfo]: ...

    async def delete_secret(self, tenant_id: uuid.UUID, name: str) -> bool:
        """False when there was no such secret."""
        ...


def secret_context(tenant_id: uuid.UUID, name: str) -> Mapping[str, str]:
    return {"tenant": str(tenant_id), "name": name}


class ProviderSecrets:
    def __init__(
        self,
        store: SecretStore,
        cipher: SecretCipher,
        audit: AuditSink,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._audit = audit
        self._clock = clock

    async def put(self, actor: Principal, name: str, value: str) -> SecretInfo:
        require(actor, Permission.SECRETS_MANAGE)
        _check_name(name)
        plaintext = value.encode()
        if not plaintext or len(plaintext) > MAX_SECRET_BYTES:
            raise InvalidInput(
                f"a secret has 1 to {MAX_SECRET_BYTES} bytes", code="invalid_secret_value"
            )
        ciphertext = await self._cipher.encrypt(plaintext, secret_context(actor.tenant_id, name))
        info = await self._store.put_secret(actor.tenant_id, name, ciphertext, self._clock())
        await self._record(actor, "secret.put", name)
        return info

    async def get(self, tenant_id: uuid.UUID, name: str) -> str:
        """The plaintext, for calling the provider. Never hand it to a client."""
        ciphertext = await self._store.get_secret_ciphertext(tenant_id, name)
        if ciphertext is None:
            raise NotFound(f"secret {name!r} does not exist", code="secret_not_found")
        plaintext = await self._cipher.decrypt(ciphertext, secret_context(tenant_id, name))
        return plaintext.decode()

    async def list(self, actor: Principal) -> list[SecretInfo]:
        require(actor, Permission.SECRETS_MANAGE)
        return list(await self._store.list_secrets(actor.tenant_id))

    async def delete(self, actor: Principal, name: str) -> None:
        require(actor, Permission.SECRETS_MANAGE)
        if not await self._store.delete_secret(actor.tenant_id, name):
            raise NotFound(f"secret {name!r} does not exist", code="secret_not_found")
        await self._record(actor, "secret.delete", name)

    async def _record(self, actor: Principal, action: str, name: str) -> None:
        await self._audit.record_audit(
            AuditEvent(action, "success", actor.tenant_id, actor.subject, f"secret:{name}")
        )


def _check_name(name: str) -> None:
    if not SECRET_NAME.match(name):
        raise InvalidInput(
            "a secret name has 1-100 characters of a-z 0-9 _ . - and starts with a letter or digit",
            code="invalid_secret_name",
        )
