"""The embedded blob store: one file per key under a root directory.

Writes go to a temporary sibling first and are renamed into place, so a reader sees either the old
bytes or the new ones, never half a file. Blocking file IO runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from shared.errors import Conflict, InvalidInput, NotFound
from shared.ports.blob_store import RESERVED_SEGMENT_PREFIX, validate_key, validate_prefix

# A concurrent delete_prefix may remove a freshly made (still empty) folder under a put; retry.
_PUT_ATTEMPTS = 3


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        # The content type matters only to HTTP clients of S3; a local file has none.
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, prefix)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(lambda: self._path(key).is_file())

    async def presigned_put_url(self, key: str, content_type: str, expires_s: int) -> str | None:
        validate_key(key)
        return None

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self._root.joinpath(*key.split("/"))
        # A symlink inside the root must not lead a key outside it.
        if not path.resolve().is_relative_to(self._root.resolve()):
            raise InvalidInput("the key leads outside the store", code="invalid_key")
        return path

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        for attempt in range(1, _PUT_ATTEMPTS + 1):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_atomically(path, data)
                return
            except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
                # S3 allows both "a" and "a/b"; a file system cannot hold a file and a folder
                # under one name.
                raise Conflict(
                    "the key clashes with an existing key's folder",
                    code="blob_key_conflict",
                    details={"key": key},
                ) from exc
            except FileNotFoundError:
                if attempt == _PUT_ATTEMPTS:
                    raise

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise _not_found(key) from exc

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError, PermissionError):
            # No blob under this key (a folder is in the way): nothing to delete. Linux reports
            # unlinking a folder as EISDIR, macOS as EPERM.
            if path.is_file():
                raise
            return
        self._prune_empty_folders(path.parent)

    def _delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        # Only the folder holding the prefix's last segment can contain matching keys.
        folder_parts = prefix.split("/")[:-1]
        base = self._root.joinpath(*folder_parts)
        if not base.is_dir() or not base.resolve().is_relative_to(self._root.resolve()):
            return 0
        removed = 0
        for folder, _dirs, files in os.walk(base, topdown=False):
            folder_path = Path(folder)
            for name in files:
                path = folder_path / name
                key = path.relative_to(self._root).as_posix()
                if name.startswith(RESERVED_SEGMENT_PREFIX) or not key.startswith(prefix):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
            self._prune_empty_folders(folder_path)
        return removed

    def _prune_empty_folders(self, folder: Path) -> None:
        """Remove ``folder`` and its empty parents up to (not including) the root."""
        root = self._root.resolve()
        current = folder.resolve()
        while current != root and current.is_relative_to(root):
            try:
                current.rmdir()
            except OSError:
                return  # not empty (or already gone): its parents are not empty either
            current = current.parent


def _write_atomically(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=RESERVED_SEGMENT_PREFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _not_found(key: str) -> NotFound:
    return NotFound("no blob under this key", code="blob_not_found", details={"key": key})
