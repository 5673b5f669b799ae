"""Provider secrets in the database: ciphertexts only (``shared.auth.secrets`` encrypts)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from shared.auth.secrets import SecretInfo
from shared.db.engine import Database
from shared.db.models import ProviderSecret, as_utc
from shared.errors import Conflict


class SecretRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def put_secret(
        self, tenant_id: uuid.UUID, name: str, ciphertext: bytes, now: datetime
    ) -> SecretInfo:
        for _ in range(2):  # a concurrent first put may win the insert: then replace its value
            async with self._db.session() as session:
                secret = await session.scalar(_secret(tenant_id, name))
                if secret is not None:
                    secret.ciphertext, secret.updated_at = ciphertext, now
                    return _info(secret)
            try:
                async with self._db.session() as session:
                    secret = ProviderSecret(
                        tenant_id=tenant_id,
                        name=name,
                        ciphertext=ciphertext,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(secret)
                return _info(secret)
            except IntegrityError:
                continue
        raise Conflict(f"secret {name!r} is being written concurrently", code="secret_conflict")

    async def get_secret_ciphertext(self, tenant_id: uuid.UUID, name: str) -> bytes | None:
        async with self._db.session() as session:
            secret = await session.scalar(_secret(tenant_id, name))
        return secret.ciphertext if secret is not None else None

    async def list_secrets(self, tenant_id: uuid.UUID) -> Sequence[SecretInfo]:
        query = (
            select(ProviderSecret.name, ProviderSecret.created_at, ProviderSecret.updated_at)
            .where(ProviderSecret.tenant_id == tenant_id)
            .order_by(ProviderSecret.name)
        )
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        return [SecretInfo(n, as_utc(created), as_utc(updated)) for n, created, updated in rows]

    async def delete_secret(self, tenant_id: uuid.UUID, name: str) -> bool:
        async with self._db.session() as session:
            result = await session.execute(
                delete(ProviderSecret).where(
                    ProviderSecret.tenant_id == tenant_id, ProviderSecret.name == name
                )
            )
        return bool(getattr(result, "rowcount", 0))


def _secret(tenant_id: uuid.UUID, name: str) -> Any:
    return select(ProviderSecret).where(
        ProviderSecret.tenant_id == tenant_id, ProviderSecret.name == name
    )


def _info(secret: ProviderSecret) -> SecretInfo:
    return SecretInfo(secret.name, as_utc(secret.created_at), as_utc(secret.updated_at))
