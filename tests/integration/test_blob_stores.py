"""The blob store contract, run against the local file store and S3 (on moto)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import EndpointConnectionError

from shared.adapters.local_blob_store import LocalBlobStore
from shared.adapters.s3_blob_store import S3BlobStore
from shared.errors import Conflict, DependencyUnavailable, InvalidInput, NotFound
from shared.ports.blob_store import RESERVED_SEGMENT_PREFIX, BlobStore
from tests.fixtures.aws import REGION, mocked_aws

pytestmark = pytest.mark.integration

KB = "tenants/t1/kbs/kb1/"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """One moto S3 (and one client: building one takes a while) per module, fake credentials."""
    with mocked_aws():
        yield boto3.client("s3", region_name=REGION)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh, empty bucket for each test."""
    name = f"quarry-documents-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    return S3BlobStore(request.getfixturevalue("bucket"), client=request.getfixturevalue("s3"))


# --- the contract: every adapter -------------------------------------------------------------


async def test_put_then_get_returns_the_bytes(store: BlobStore) -> None:
    key = KB + "policies/Travel policy Zürich v2+final.pdf"
    await store.put(key, b"%PDF-1.7 ...", "application/pdf")
    assert await store.get(key) == b"%PDF-1.7 ..."
    assert await store.exists(key)


async def test_put_replaces_and_keeps_empty_blobs(store: BlobStore) -> None:
    await store.put(KB + "a.txt", b"first")
    await store.put(KB + "a.txt", b"second")
    assert await store.get(KB + "a.txt") == b"second"
    await store.put(KB + "empty.txt", b"")
    assert await store.get(KB + "empty.txt") == b""


async def test_a_missing_key_is_not_found(store: BlobStore) -> None:
    assert not await store.exists(KB + "missing.txt")
    with pytest.raises(NotFound) as caught:
        await store.get(KB + "missing.txt")
    assert caught.value.code == "blob_not_found"
    # A folder holding keys is not itself a key.
    await store.put(KB + "folder/inner.txt", b"x")
    assert not await store.exists(KB + "folder")
    with pytest.raises(NotFound):
        await store.get(KB + "folder")


async def test_delete_is_idempotent(store: BlobStore) -> None:
    await store.put(KB + "a.txt", b"x")
    await store.delete(KB + "a.txt")
    assert not await store.exists(KB + "a.txt")
    await store.delete(KB + "a.txt")
    await store.delete(KB + "never-was.txt")


async def test_delete_prefix_removes_only_matching_keys(store: BlobStore) -> None:
    doomed = [KB + "doc.txt", KB + "docs/a.txt", KB + "docs/deep/b.txt"]
    kept = [KB + "other.txt", "tenants/t1/kbs/kb10/doc.txt", "tenants/t2/kbs/kb1/doc.txt"]
    for key in doomed + kept:
        await store.put(key, key.encode())
    assert await store.delete_prefix(KB + "doc") == len(doomed)
    for key in doomed:
        assert not await store.exists(key)
    for key in kept:
        assert await store.get(key) == key.encode()
    assert await store.delete_prefix(KB) == 1
    assert await store.delete_prefix("tenants/t9/") == 0


async def test_a_key_can_be_reused_after_its_folder_is_emptied(store: BlobStore) -> None:
    await store.put(KB + "x/y.txt", b"child")
    await store.delete(KB + "x/y.txt")
    await store.put(KB + "x", b"now a file")
    assert await store.get(KB + "x") == b"now a file"


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside.txt", "a/../../b", "a//b", "a/./b", "dir/", "a\\b", "a\x00b"],
)
async def test_bad_keys_are_rejected(store: BlobStore, key: str) -> None:
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
        lambda: store.presigned_put_url(key, "text/plain", 60),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidInput) as caught:
            await attempt()
        assert caught.value.code == "invalid_key"


@pytest.mark.parametrize("prefix", ["", "/", "../", "a/../b/"])
async def test_bad_prefixes_are_rejected(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidInput):
        await store.delete_prefix(prefix)


async def test_presigned_put_url(store: BlobStore, request: pytest.FixtureRequest) -> None:
    url = await store.presigned_put_url(KB + "upload.pdf", "application/pdf", 300)
    if isinstance(store, LocalBlobStore):
        assert url is None
    else:
        assert url is not None
        assert request.getfixturevalue("bucket") in url
        assert "tenants/t1/kbs/kb1/upload.pdf" in url


def _everything(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


# --- local file store only -------------------------------------------------------------------


async def test_local_files_live_under_the_root_with_no_leftovers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put(KB + "docs/a.txt", b"x")
    assert (tmp_path / "tenants/t1/kbs/kb1/docs/a.txt").read_bytes() == b"x"
    assert not any(p.name.startswith(RESERVED_SEGMENT_PREFIX) for p in _everything(tmp_path))
    await store.delete_prefix("tenants/")
    assert _everything(tmp_path) == []  # emptied folders are removed too


async def test_local_store_rejects_a_key_under_a_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put(KB + "a", b"file")
    with pytest.raises(Conflict) as caught:
        await store.put(KB + "a/b", b"child")
    assert caught.value.code == "blob_key_conflict"


async def test_local_store_does_not_follow_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "escape")
    store = LocalBlobStore(root)
    with pytest.raises(InvalidInput):
        await store.put("escape/a.txt", b"x")
    assert _everything(outside) == []


async def test_local_store_rejects_reserved_names(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        await LocalBlobStore(tmp_path).put(KB + RESERVED_SEGMENT_PREFIX + "x", b"x")


# --- S3 only ---------------------------------------------------------------------------------


async def test_s3_sends_the_content_type_and_kms_encryption(s3: Any, bucket: str) -> None:
    store = S3BlobStore(bucket, client=s3, sse_kms=True)
    await store.put(KB + "a.pdf", b"%PDF", "application/pdf")
    head = s3.head_object(Bucket=bucket, Key=KB + "a.pdf")
    assert head["ContentType"] == "application/pdf"
    assert head["ServerSideEncryption"] == "aws:kms"


async def test_s3_presigned_url_accepts_an_upload(s3: Any, bucket: str) -> None:
    store = S3BlobStore(bucket, client=s3)
    key = KB + "direct upload.txt"
    url = await store.presigned_put_url(key, "text/plain", 300)
    assert url is not None
    response = await asyncio.to_thread(
        requests.put, url, data=b"uploaded", headers={"Content-Type": "text/plain"}, timeout=5
    )
    assert response.status_code == 200
    assert await store.get(key) == b"uploaded"


async def test_s3_presigned_url_expiry_is_bounded(s3: Any, bucket: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await S3BlobStore(bucket, client=s3).presigned_put_url(KB + "a", "text/plain", 0)
    assert caught.value.code == "invalid_expiry"


async def test_s3_errors_become_dependency_unavailable(s3: Any) -> None:
    store = S3BlobStore("no-such-bucket", client=s3)
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: store.put(KB + "a.txt", b"x"),
        lambda: store.get(KB + "a.txt"),
        lambda: store.delete_prefix(KB),
    ]
    for attempt in attempts:
        with pytest.raises(DependencyUnavailable) as caught:
            await attempt()
        assert caught.value.code == "blob_store_unavailable"


class _UnreachableS3:
    def put_object(self, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.eu-west-1.amazonaws.com")


async def test_s3_network_errors_become_dependency_unavailable() -> None:
    with pytest.raises(DependencyUnavailable) as caught:
        await S3BlobStore("any", client=_UnreachableS3()).put(KB + "a.txt", b"x")
    assert caught.value.code == "blob_store_unavailable"


async def test_s3_builds_its_own_client_when_none_is_given(s3: Any, bucket: str) -> None:
    store = S3BlobStore(bucket, region=REGION)
    await store.put(KB + "a.txt", b"x")
    assert s3.get_object(Bucket=bucket, Key=KB + "a.txt")["Body"].read() == b"x"
