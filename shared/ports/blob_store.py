"""The blob store port: uploaded document bytes, addressed by a slash-separated key.

Keys follow one rule set for every adapter (``validate_key``) so that a key that works against S3
also works against the local file store: no empty, ``.`` or ``..`` segments, no leading slash, no
backslash or NUL, at most 1024 UTF-8 bytes (S3's limit).
"""

from __future__ import annotations

from typing import Protocol

from shared.errors import InvalidInput

MAX_KEY_BYTES = 1024
# The local store writes each blob to a temporary sibling first; keys may not collide with those.
RESERVED_SEGMENT_PREFIX = ".quarry-tmp-"


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``NotFound`` (code ``blob_not_found``) when there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; the number removed."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def presigned_put_url(self, key: str, content_type: str, expires_s: int) -> str | None:
        """A URL a client can PUT the bytes to directly, or None where the store has none."""
        ...


def validate_key(key: str) -> str:
    """``key`` unchanged when it is a valid blob key, else ``InvalidInput`` (``invalid_key``)."""
    _check_text(key, "key")
    if key.endswith("/"):
        raise _invalid("a key must not end with '/'", key)
    _check_segments(key.split("/"), key)
    return key


def validate_prefix(prefix: str) -> str:
    """Like ``validate_key``, but a prefix may end with '/' (everything under a folder)."""
    _check_text(prefix, "prefix")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()
    _check_segments(segments, prefix)
    return prefix


def _check_text(value: str, what: str) -> None:
    if not value:
        raise _invalid(f"a {what} must not be empty", value)
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise _invalid(f"a {what} must be at most {MAX_KEY_BYTES} UTF-8 bytes", value[:64])
    if "\\" in value or "\x00" in value:
        raise _invalid(f"a {what} must not contain a backslash or NUL", value)
    if value.startswith("/"):
        raise _invalid(f"a {what} must be relative (no leading '/')", value)


def _check_segments(segments: list[str], value: str) -> None:
    for segment in segments:
        if segment in ("", ".", ".."):
            raise _invalid("a key must not contain empty, '.' or '..' segments", value)
        if segment.startswith(RESERVED_SEGMENT_PREFIX):
            raise _invalid(f"a key segment must not start with {RESERVED_SEGMENT_PREFIX!r}", value)


def _invalid(message: str, value: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_key", details={"key": value})
