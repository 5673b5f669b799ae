"""The secret cipher port: envelope encryption of small secrets (provider API keys).

``context`` (e.g. ``{"tenant": ..., "name": ...}``) is bound to the ciphertext as authenticated
data: decrypting under any other context fails, so a ciphertext copied to another tenant's or
another secret's row is useless. Adapters report a ciphertext that does not decrypt as
``UndecryptableSecret`` and an unreachable key service as ``DependencyUnavailable``
(``secret_cipher_unavailable``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from shared.errors import QuarryError

CIPHER_UNAVAILABLE = "secret_cipher_unavailable"


class UndecryptableSecret(QuarryError):
    """Tampered, moved to another context, or made with another key: never a caller's fault."""

    status_code = 500
    code = "secret_undecryptable"


class SecretCipher(Protocol):
    async def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> bytes: ...

    async def decrypt(self, ciphertext: bytes, context: Mapping[str, str]) -> bytes: ...


def associated_data(label: str, context: Mapping[str, str]) -> bytes:
    """A canonical encoding of ``context`` (sorted keys, no whitespace) for AES-GCM's associated
    data; ``label`` separates the uses of one key (wrapping data keys vs encrypting data)."""
    encoded = json.dumps(dict(context), sort_keys=True, separators=(",", ":"))
    return label.encode() + b"\x00" + encoded.encode()
