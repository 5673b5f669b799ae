"""The secret cipher contract, on the local key file and on KMS (moto)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared.adapters.kms_envelope_cipher import KmsEnvelopeCipher
from shared.adapters.local_key_file_cipher import LocalKeyFileCipher
from shared.errors import ConfigurationError, DependencyUnavailable
from shared.ports.secret_cipher import SecretCipher, UndecryptableSecret
from tests.fixtures.aws import REGION, mocked_aws

pytestmark = pytest.mark.integration

PLAINTEXT = b"sk-provider-0123456789abcdef"
CONTEXT = {"tenant": "t-1", "name": "openai"}


@pytest.fixture(scope="module")
def kms() -> Iterator[Any]:
    with mocked_aws():
        yield boto3.client("kms", region_name=REGION)


@pytest.fixture(params=["local", "kms"])
def cipher(request: pytest.FixtureRequest, tmp_path: Path) -> SecretCipher:
    if request.param == "local":
        return LocalKeyFileCipher(tmp_path / "keys" / "secrets.key")
    client = request.getfixturevalue("kms")
    key_id = client.create_key(Description="quarry secrets")["KeyMetadata"]["KeyId"]
    return KmsEnvelopeCipher(key_id, client)


async def test_round_trip_and_the_ciphertext_hides_the_plaintext(cipher: SecretCipher) -> None:
    ciphertext = await cipher.encrypt(PLAINTEXT, CONTEXT)
    assert PLAINTEXT not in ciphertext
    assert PLAINTEXT[3:15] not in ciphertext
    assert await cipher.decrypt(ciphertext, dict(CONTEXT)) == PLAINTEXT
    assert await cipher.encrypt(PLAINTEXT, CONTEXT) != ciphertext  # fresh data key and nonce


@pytest.mark.parametrize(
    "other_context",
    [{"tenant": "t-2", "name": "openai"}, {"tenant": "t-1", "name": "cohere"}, {"tenant": "t-1"}],
)
async def test_a_ciphertext_only_decrypts_in_its_own_context(
    cipher: SecretCipher, other_context: dict[str, str]
) -> None:
    ciphertext = await cipher.encrypt(PLAINTEXT, CONTEXT)
    with pytest.raises(UndecryptableSecret):
        await cipher.decrypt(ciphertext, other_context)


async def test_tampered_or_truncated_ciphertexts_are_refused(cipher: SecretCipher) -> None:
    ciphertext = await cipher.encrypt(PLAINTEXT, CONTEXT)
    flipped = bytearray(ciphertext)
    flipped[-5] ^= 0x01
    for bad in (bytes(flipped), ciphertext[:-1], ciphertext[:10], b"", b"\x09" + ciphertext[1:]):
        with pytest.raises(UndecryptableSecret):
            await cipher.decrypt(bad, CONTEXT)


async def test_the_key_file_is_private_reused_and_required(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secrets.key"
    ciphertext = await LocalKeyFileCipher(path).encrypt(PLAINTEXT, CONTEXT)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert await LocalKeyFileCipher(path).decrypt(ciphertext, CONTEXT) == PLAINTEXT

    other = LocalKeyFileCipher(tmp_path / "other.key")
    with pytest.raises(UndecryptableSecret):
        await other.decrypt(ciphertext, CONTEXT)
    broken = tmp_path / "broken.key"
    broken.write_bytes(b"short")
    with pytest.raises(ConfigurationError):
        await LocalKeyFileCipher(broken).encrypt(PLAINTEXT, CONTEXT)


async def test_concurrent_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "race.key"
    ciphers = [LocalKeyFileCipher(path) for _ in range(8)]

    async def encrypt_in_thread(c: LocalKeyFileCipher) -> bytes:
        return await asyncio.to_thread(lambda: asyncio.run(c.encrypt(PLAINTEXT, CONTEXT)))

    ciphertexts = await asyncio.gather(*(encrypt_in_thread(c) for c in ciphers))
    reader = LocalKeyFileCipher(path)
    assert [await reader.decrypt(c, CONTEXT) for c in ciphertexts] == [PLAINTEXT] * 8


async def test_kms_errors_become_domain_errors(kms: Any) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    other_key = kms.create_key()["KeyMetadata"]["KeyId"]
    ciphertext = await KmsEnvelopeCipher(key_id, kms).encrypt(PLAINTEXT, CONTEXT)

    # Decrypting under another key id: KMS says IncorrectKeyException, moto AccessDenied.
    with pytest.raises((UndecryptableSecret, DependencyUnavailable)):
        await KmsEnvelopeCipher(other_key, kms).decrypt(ciphertext, CONTEXT)
    with pytest.raises(DependencyUnavailable) as missing:
        await KmsEnvelopeCipher("alias/no-such-key", kms).encrypt(PLAINTEXT, CONTEXT)
    assert missing.value.code == "secret_cipher_unavailable"


async def test_kms_unreachable_is_dependency_unavailable() -> None:
    from botocore.config import Config

    client = boto3.client(
        "kms",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(DependencyUnavailable):
        await KmsEnvelopeCipher("alias/quarry", client).encrypt(PLAINTEXT, CONTEXT)
