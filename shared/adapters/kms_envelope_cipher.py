"""The secret cipher on AWS KMS (the ``aws`` profile).

Each secret gets a data key from ``GenerateDataKey`` (with the context as KMS encryption context,
so KMS itself refuses to unwrap it under another context, and CloudTrail logs the tenant and
name). The data encrypts locally with AES-GCM under the plaintext data key, which is then
dropped; only KMS's encrypted copy is stored. boto3 is synchronous: calls run in a worker thread.

Layout: version (1) | length of the encrypted data key (2, big-endian) | encrypted data key |
nonce (12) | data + tag.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import DependencyUnavailable
from shared.ports.secret_cipher import CIPHER_UNAVAILABLE, UndecryptableSecret, associated_data

NONCE_BYTES = 12
VERSION = b"\x02"
_LENGTH = struct.Struct(">H")
# KMS's answers for a blob it will not unwrap under this key and context.
_UNDECRYPTABLE_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class KmsEnvelopeCipher:
    def __init__(self, key_id: str, client: Any = None, *, region: str | None = None) -> None:
        """``key_id``: a KMS key id, ARN or alias. ``client``: a boto3 KMS client (built from
        ``region`` when None)."""
        self._key_id = key_id
        self._client: Any = (
            client
            if client is not None
            else boto3.client(
                "kms", region_name=region, config=Config(retries={"mode": "standard"})
            )
        )

    async def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        response = await self._call(
            "generate_data_key",
            KeyId=self._key_id,
            KeySpec="AES_256",
            EncryptionContext=dict(context),
        )
        encrypted_key: bytes = response["CiphertextBlob"]
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = AESGCM(response["Plaintext"]).encrypt(
            nonce, plaintext, associated_data("data", context)
        )
        del response  # the plaintext data key goes no further than this call
        return VERSION + _LENGTH.pack(len(encrypted_key)) + encrypted_key + nonce + body

    async def decrypt(self, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        if len(ciphertext) < 1 + _LENGTH.size or ciphertext[:1] != VERSION:
            raise UndecryptableSecret("not a ciphertext of the KMS envelope cipher")
        (key_length,) = _LENGTH.unpack_from(ciphertext, 1)
        start = 1 + _LENGTH.size
        encrypted_key = ciphertext[start : start + key_length]
        nonce = ciphertext[start + key_length : start + key_length + NONCE_BYTES]
        body = ciphertext[start + key_length + NONCE_BYTES :]
        if len(encrypted_key) != key_length or len(nonce) != NONCE_BYTES:
            raise UndecryptableSecret("the ciphertext is truncated")
        response = await self._call(
            "decrypt",
            CiphertextBlob=encrypted_key,
            KeyId=self._key_id,  # pinned: KMS must not pick whatever key the blob names
            EncryptionContext=dict(context),
        )
        try:
            return AESGCM(response["Plaintext"]).decrypt(
                nonce, body, associated_data("data", context)
            )
        except InvalidTag:
            raise UndecryptableSecret("the secret does not decrypt: tampered or moved") from None

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = await asyncio.to_thread(
                getattr(self._client, operation), **params
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _UNDECRYPTABLE_CODES:
                raise UndecryptableSecret(f"KMS refused to decrypt the data key: {code}") from None
            raise _unavailable(operation, f"{code}: {exc}") from exc
        except BotoCoreError as exc:
            raise _unavailable(operation, f"{type(exc).__name__}: {exc}") from exc
        return response


def _unavailable(operation: str, reason: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"KMS {operation} failed: {reason}",
        code=CIPHER_UNAVAILABLE,
        details={"operation": operation},
    )
