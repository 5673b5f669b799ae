"""The blob store on Amazon S3.

boto3's client is synchronous, so every call runs in a worker thread. SDK errors become domain
errors here: a missing key is ``NotFound`` (``blob_not_found``), anything else S3 or the network
reports is ``DependencyUnavailable`` (``blob_store_unavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import DependencyUnavailable, InvalidInput, NotFound
from shared.ports.blob_store import validate_key, validate_prefix

T = TypeVar("T")

# S3 error codes for a missing key: GetObject says NoSuchKey, HEAD has no body and says 404.
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
_MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most 7 days


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        client: Any = None,
        *,
        sse_kms: bool = False,
        kms_key_id: str | None = None,
        region: str | None = None,
    ) -> None:
        """``client``: a boto3 S3 client (built from ``region`` when None). ``sse_kms``: ask S3 to
        encrypt every object with KMS (``kms_key_id``, else the account's S3 key)."""
        self._bucket = bucket
        self._client: Any = (
            client
            if client is not None
            else boto3.client(
                "s3",
                region_name=region,
                config=Config(signature_version="s3v4", retries={"mode": "standard"}),
            )
        )
        self._encryption: dict[str, str] = {}
        if sse_kms or kms_key_id:
            self._encryption["ServerSideEncryption"] = "aws:kms"
        if kms_key_id:
            self._encryption["SSEKMSKeyId"] = kms_key_id

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": validate_key(key), "Body": data}
        if content_type:
            params["ContentType"] = content_type
        await self._call(lambda: self._client.put_object(**params, **self._encryption), key)

    async def get(self, key: str) -> bytes:
        validate_key(key)

        def read() -> bytes:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            with contextlib.closing(response["Body"]) as body:
                data: bytes = body.read()
            return data

        return await self._call(read, key)

    async def delete(self, key: str) -> None:
        validate_key(key)
        # S3 answers 204 for a missing key too, so this is idempotent as it is.
        await self._call(lambda: self._client.delete_object(Bucket=self._bucket, Key=key), key)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        return await self._call(lambda: self._delete_prefix(prefix), prefix)

    async def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            await self._call(lambda: self._client.head_object(Bucket=self._bucket, Key=key), key)
        except NotFound:
            return False
        return True

    async def presigned_put_url(self, key: str, content_type: str, expires_s: int) -> str | None:
        validate_key(key)
        if not 1 <= expires_s <= _MAX_PRESIGN_S:
            raise InvalidInput(
                f"expires_s must be between 1 and {_MAX_PRESIGN_S}",
                code="invalid_expiry",
                details={"expires_s": expires_s},
            )
        # The uploader must send the same Content-Type (and SSE headers) it was signed with.
        params = {"Bucket": self._bucket, "Key": key, "ContentType": content_type}
        params.update(self._encryption)

        def sign() -> str:
            url: str = self._client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=expires_s, HttpMethod="PUT"
            )
            return url

        # Signing may resolve credentials (instance metadata), which blocks.
        return await self._call(sign, key)

    def _delete_prefix(self, prefix: str) -> int:
        paginator = self._client.get_paginator("list_objects_v2")
        removed = 0
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = keys[start : start + _DELETE_BATCH]
                response = self._client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
                )
                errors = response.get("Errors", [])
                if errors:
                    raise DependencyUnavailable(
                        f"S3 could not delete {len(errors)} of {len(batch)} keys",
                        code="blob_store_unavailable",
                        details={"errors": [_error_summary(error) for error in errors[:10]]},
                    )
                removed += len(batch)
        return removed

    async def _call(self, operation: Callable[[], T], key: str) -> T:
        try:
            return await asyncio.to_thread(operation)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_KEY_CODES:
                raise NotFound(
                    "no blob under this key", code="blob_not_found", details={"key": key}
                ) from exc
            raise _unavailable(code or "ClientError") from exc
        except BotoCoreError as exc:
            raise _unavailable(type(exc).__name__) from exc


def _unavailable(reason: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        "the blob store did not answer", code="blob_store_unavailable", details={"reason": reason}
    )


def _error_summary(error: dict[str, Any]) -> dict[str, str]:
    return {"key": str(error.get("Key", "")), "code": str(error.get("Code", ""))}
