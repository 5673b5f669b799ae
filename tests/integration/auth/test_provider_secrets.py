"""Provider secrets on both databases: encrypted at rest, bound to their tenant, never listed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import select, update

from shared.adapters.kms_envelope_cipher import KmsEnvelopeCipher
from shared.adapters.local_key_file_cipher import LocalKeyFileCipher
from shared.auth.rbac import Role
from shared.auth.secrets import ProviderSecrets
from shared.auth.sessions import UserRecord
from shared.db.auth_repository import AuthRepository
from shared.db.engine import Database
from shared.db.models import ProviderSecret
from shared.db.secret_repository import SecretRepository
from shared.errors import Forbidden, InvalidInput, NotFound
from shared.ports.secret_cipher import SecretCipher, UndecryptableSecret
from tests.integration.auth.conftest import audit_entries, principal_of

pytestmark = pytest.mark.integration

VALUE = "sk-live-4f9a1c2e8b7d6a5f"
NewUser = Callable[..., Coroutine[Any, Any, UserRecord]]


def make_secrets(database: Database, cipher: SecretCipher) -> ProviderSecrets:
    return ProviderSecrets(SecretRepository(database), cipher, AuthRepository(database))


@pytest.fixture
def secrets(database: Database, tmp_path: Path) -> ProviderSecrets:
    return make_secrets(database, LocalKeyFileCipher(tmp_path / "secrets.key"))


async def stored_rows(database: Database, tenant_id: uuid.UUID) -> list[ProviderSecret]:
    async with database.session() as session:
        query = select(ProviderSecret).where(ProviderSecret.tenant_id == tenant_id)
        return list(await session.scalars(query))


async def test_a_secret_is_stored_encrypted_and_read_back_internally(
    secrets: ProviderSecrets, new_user: NewUser, database: Database
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    info = await secrets.put(admin, "openai", VALUE)

    assert info.name == "openai"
    [row] = await stored_rows(database, admin.tenant_id)
    assert row.ciphertext != VALUE.encode()
    assert VALUE.encode() not in row.ciphertext
    assert VALUE[4:12].encode() not in row.ciphertext
    assert await secrets.get(admin.tenant_id, "openai") == VALUE

    listed = await secrets.list(admin)
    assert [s.name for s in listed] == ["openai"]
    assert VALUE not in repr(listed)
    actions = [e.action for e in await audit_entries(database, admin.tenant_id)]
    assert actions == ["secret.put"]


async def test_put_replaces_and_delete_removes(
    secrets: ProviderSecrets, new_user: NewUser, database: Database
) -> None:
    admin = principal_of(await new_user(Role.ADMIN))
    first = await secrets.put(admin, "cohere", "old-value-1")
    second = await secrets.put(admin, "cohere", "new-value-2")

    assert second.created_at == first.created_at
    assert await secrets.get(admin.tenant_id, "cohere") == "new-value-2"
    assert len(await stored_rows(database, admin.tenant_id)) == 1
    await secrets.delete(admin, "cohere")
    with pytest.raises(NotFound):
        await secrets.get(admin.tenant_id, "cohere")
    with pytest.raises(NotFound):
        await secrets.delete(admin, "cohere")
    actions = [e.action for e in await audit_entries(database, admin.tenant_id)]
    assert actions == ["secret.put", "secret.put", "secret.delete"]


async def test_a_ciphertext_moved_to_another_tenant_does_not_decrypt(
    secrets: ProviderSecrets,
    new_user: NewUser,
    new_tenant: Callable[[], Coroutine[Any, Any, uuid.UUID]],
    database: Database,
) -> None:
    victim = principal_of(await new_user(Role.ADMIN))
    attacker = principal_of(await new_user(Role.ADMIN, tenant=await new_tenant()))
    await secrets.put(victim, "openai", VALUE)
    await secrets.put(attacker, "openai", "attacker-own-value")
    [stolen] = await stored_rows(database, victim.tenant_id)

    async with database.session() as session:  # e.g. through an SQL injection elsewhere
        await session.execute(
            update(ProviderSecret)
            .where(ProviderSecret.tenant_id == attacker.tenant_id)
            .values(ciphertext=stolen.ciphertext)
        )
    with pytest.raises(UndecryptableSecret):
        await secrets.get(attacker.tenant_id, "openai")
    with pytest.raises(NotFound):  # and tenants only ever see their own names
        await secrets.get(attacker.tenant_id, "anthropic")
    assert await secrets.get(victim.tenant_id, "openai") == VALUE


async def test_only_admins_manage_secrets_and_names_are_checked(
    secrets: ProviderSecrets, new_user: NewUser
) -> None:
    member = principal_of(await new_user(Role.MEMBER))
    admin = principal_of(await new_user(Role.ADMIN))
    with pytest.raises(Forbidden):
        await secrets.put(member, "openai", VALUE)
    with pytest.raises(Forbidden):
        await secrets.list(member)
    for name in ("", "Upper", "../etc", "a" * 101, "-lead"):
        with pytest.raises(InvalidInput):
            await secrets.put(admin, name, VALUE)
    with pytest.raises(InvalidInput):
        await secrets.put(admin, "empty", "")


@pytest.fixture
def kms_key(aws_credentials: None) -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("kms", region_name="eu-west-1")
        yield client, client.create_key()["KeyMetadata"]["KeyId"]


async def test_secrets_on_kms(
    kms_key: tuple[Any, str],
    new_user: NewUser,
    new_tenant: Callable[[], Coroutine[Any, Any, uuid.UUID]],
    database: Database,
) -> None:
    secrets = make_secrets(database, KmsEnvelopeCipher(kms_key[1], kms_key[0]))
    admin = principal_of(await new_user(Role.ADMIN))
    other = principal_of(await new_user(Role.ADMIN, tenant=await new_tenant()))
    await secrets.put(admin, "bedrock", VALUE)
    await secrets.put(other, "bedrock", "placeholder")
    [row] = await stored_rows(database, admin.tenant_id)
    assert VALUE.encode() not in row.ciphertext
    assert await secrets.get(admin.tenant_id, "bedrock") == VALUE

    async with database.session() as session:
        await session.execute(
            update(ProviderSecret)
            .where(ProviderSecret.tenant_id == other.tenant_id)
            .values(ciphertext=row.ciphertext)
        )
    with pytest.raises(UndecryptableSecret):
        await secrets.get(other.tenant_id, "bedrock")
