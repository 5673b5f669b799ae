"""The secret cipher on a local key file (the ``local`` profile's default).

Envelope encryption, as KMS does it: each secret gets a fresh 256-bit data key; the data encrypts
under it (AES-GCM, random 96-bit nonce) and the data key is wrapped by the file's key (AES-GCM
again). Both carry the context as associated data. The file holds 32 random bytes, is created
with mode 0600 on first use, and must be backed up: without it no stored secret can be read.

Layout: version (1) | wrap nonce (12) | wrapped data key (32 + 16 tag) | nonce (12) | data + tag.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ConfigurationError
from shared.ports.secret_cipher import UndecryptableSecret, associated_data

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = b"\x01"
_WRAPPED_KEY_END = 1 + NONCE_BYTES + KEY_BYTES + TAG_BYTES
_MIN_LENGTH = _WRAPPED_KEY_END + NONCE_BYTES + TAG_BYTES


class LocalKeyFileCipher:
    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._key: AESGCM | None = None
        self._lock = threading.Lock()

    async def encrypt(self, plaintext: bytes, context: Mapping[str, str]) -> bytes:
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        wrap_nonce, nonce = secrets.token_bytes(NONCE_BYTES), secrets.token_bytes(NONCE_BYTES)
        wrapped = self._file_key().encrypt(wrap_nonce, data_key, associated_data("dek", context))
        body = AESGCM(data_key).encrypt(nonce, plaintext, associated_data("data", context))
        return VERSION + wrap_nonce + wrapped + nonce + body

    async def decrypt(self, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        if len(ciphertext) < _MIN_LENGTH or ciphertext[:1] != VERSION:
            raise UndecryptableSecret("not a ciphertext of the local key-file cipher")
        wrap_nonce = ciphertext[1 : 1 + NONCE_BYTES]
        wrapped = ciphertext[1 + NONCE_BYTES : _WRAPPED_KEY_END]
        nonce = ciphertext[_WRAPPED_KEY_END : _WRAPPED_KEY_END + NONCE_BYTES]
        body = ciphertext[_WRAPPED_KEY_END + NONCE_BYTES :]
        try:
            data_key = self._file_key().decrypt(
                wrap_nonce, wrapped, associated_data("dek", context)
            )
            return AESGCM(data_key).decrypt(nonce, body, associated_data("data", context))
        except InvalidTag:
            raise UndecryptableSecret(
                "the secret does not decrypt: tampered, moved, or made with another key file"
            ) from None

    def _file_key(self) -> AESGCM:
        with self._lock:
            if self._key is None:
                self._key = AESGCM(self._load_or_create())
            return self._key

    def _load_or_create(self) -> bytes:
        if not self._path.exists():
            _create_key_file(self._path)
        mode = stat.S_IMODE(self._path.stat().st_mode)
        if mode & 0o077:
            log.warning("key file %s is readable by others (mode %o)", self._path, mode)
        key = self._path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ConfigurationError(
                f"key file {self._path} holds {len(key)} bytes, not {KEY_BYTES}",
                code="invalid_key_file",
            )
        return key


def _create_key_file(path: Path) -> None:
    """Writes a fresh key to a private temporary file and links it into place, so that two
    processes starting at once agree on one key and nobody reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(KEY_BYTES))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
            log.info("created secret key file %s", path)
        except FileExistsError:
            pass  # another process won the race: use its key
    finally:
        temporary.unlink(missing_ok=True)
