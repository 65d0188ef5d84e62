"""`MinioImageStorage` on a real SeaweedFS: the storage contract, then what S3 adds.

Every test gets a fresh bucket, removed afterwards: SeaweedFS gives each bucket
its own volumes out of only 8 per server (``weed server``'s ``-volume.max``),
so buckets left behind soon make every later write fail with "no free volumes".
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import pytest
from minio import Minio
from minio.deleteobjects import DeleteError, DeleteResult

from adapters.minio import PART_SIZE, MinioImageStorage
from devtools import devstack
from imagecore.errors import DependencyUnavailable, FileTooLarge, ObjectNotFound
from imagecore.testing.contracts.storage import ImageStorageContract

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def raw_client(env: Mapping[str, str]) -> Minio:
    return Minio(
        env["S3_ENDPOINT"],
        access_key=env["S3_ACCESS_KEY"],
        secret_key=env["S3_SECRET_KEY"],
        secure=env["S3_USE_SSL"] == "true",
        region=env["S3_REGION"],
    )


async def open_storage(env: Mapping[str, str], bucket: str) -> MinioImageStorage:
    return await MinioImageStorage.open(
        endpoint=env["S3_ENDPOINT"],
        access_key=env["S3_ACCESS_KEY"],
        secret_key=env["S3_SECRET_KEY"],
        bucket=bucket,
        region=env["S3_REGION"],
        secure=env["S3_USE_SSL"] == "true",
    )


def remove_bucket(client: Minio, bucket: str) -> None:
    if not client.bucket_exists(bucket):
        return
    for upload in client._list_multipart_uploads(bucket).uploads:
        client._abort_multipart_upload(bucket, upload.object_name, upload.upload_id)
    for found in client.list_objects(bucket, recursive=True):
        client.remove_object(bucket, found.object_name)
    client.remove_bucket(bucket)


def open_uploads(client: Minio, bucket: str) -> list[str]:
    return [upload.object_name for upload in client._list_multipart_uploads(bucket).uploads]


@pytest.fixture(scope="session")
def s3(seaweedfs_server) -> Minio:
    return raw_client(seaweedfs_server.env)


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:16]}"
    yield name
    remove_bucket(s3, name)


@pytest.fixture
async def minio_storage(seaweedfs_server, bucket) -> AsyncIterator[MinioImageStorage]:
    storage = await open_storage(seaweedfs_server.env, bucket)
    yield storage
    await storage.close()


class TestMinioImageStorage(ImageStorageContract):
    @pytest.fixture
    def storage(self, minio_storage: MinioImageStorage) -> MinioImageStorage:
        return minio_storage


class Stream:
    """Random bytes made chunk by chunk: the test never holds the whole object."""

    def __init__(self, size: int, *, seed: int = 7, fail_at: int = -1) -> None:
        self.size, self.seed, self.fail_at = size, seed, fail_at

    def blocks(self) -> Iterator[bytes]:
        rng = random.Random(self.seed)
        for start in range(0, self.size, 64 * 1024):
            yield rng.randbytes(min(64 * 1024, self.size - start))

    async def chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        for block in self.blocks():
            if sent == self.fail_at:
                raise FileTooLarge(f"more than {self.fail_at} bytes")
            sent += len(block)
            yield block

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for block in self.blocks():
            digest.update(block)
        return digest.hexdigest()


async def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def sha256_of(storage: MinioImageStorage, key: str) -> str:
    digest = hashlib.sha256()
    async for chunk in storage.get(key, chunk_size=MiB):
        digest.update(chunk)
    return digest.hexdigest()


async def read(storage: MinioImageStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.get(key)])


async def test_a_40_mib_upload_streams_in_parts_without_holding_the_object(
    minio_storage, s3, bucket
):
    upload = Stream(40 * MiB)
    tracemalloc.start()
    try:
        stored = await minio_storage.put("originals/i1/big", upload.chunks(), "image/tiff")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert stored.size == 40 * MiB
    assert stored.etag.endswith("-5")  # a multipart upload of five 8 MiB parts
    assert await minio_storage.stat("originals/i1/big") == stored
    assert s3.stat_object(bucket, "originals/i1/big").size == 40 * MiB
    assert await sha256_of(minio_storage, "originals/i1/big") == upload.sha256()
    # About three parts (the SDK copies each part once and keeps the previous one while it
    # reads the next), whatever the object's size: 25 MiB here, and the same for 200 MiB.
    assert peak < 4 * PART_SIZE, f"peak {peak / MiB:.1f} MiB"


async def test_an_upload_that_fails_after_20_mib_keeps_the_earlier_object(
    minio_storage, s3, bucket
):
    earlier = await minio_storage.put("originals/i1/d1", Stream(MiB).chunks(), "image/png")
    broken = Stream(40 * MiB, seed=8, fail_at=20 * MiB)

    with pytest.raises(FileTooLarge):
        await minio_storage.put("originals/i1/d1", broken.chunks(), "image/jpeg")

    assert await minio_storage.stat("originals/i1/d1") == earlier
    assert await sha256_of(minio_storage, "originals/i1/d1") == Stream(MiB).sha256()
    assert open_uploads(s3, bucket) == []  # the multipart upload was aborted, not left open


async def test_an_upload_that_fails_on_a_fresh_key_leaves_no_object(minio_storage, s3, bucket):
    broken = Stream(30 * MiB, fail_at=20 * MiB)
    with pytest.raises(FileTooLarge):
        await minio_storage.put("originals/i1/new", broken.chunks(), "image/jpeg")
    assert not await minio_storage.exists("originals/i1/new")
    assert open_uploads(s3, bucket) == []


async def test_a_cancelled_upload_is_aborted(minio_storage, s3, bucket):
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        block = random.Random(3).randbytes(MiB)
        for sent in range(10_000):
            if sent == 12:
                started.set()
            yield block

    upload = asyncio.create_task(minio_storage.put("k/cancelled", endless(), "image/png"))
    await started.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert not await minio_storage.exists("k/cancelled")
    assert open_uploads(s3, bucket) == []


async def test_a_read_closed_early_gives_its_connection_back(minio_storage):
    await minio_storage.put("k/photo", Stream(3 * MiB).chunks(), "image/jpeg")
    for _ in range(30):
        reader = minio_storage.get("k/photo", chunk_size=64 * 1024)
        assert len(await anext(reader)) == 64 * 1024
        await reader.aclose()
    assert await sha256_of(minio_storage, "k/photo") == Stream(3 * MiB).sha256()


async def test_a_delete_of_many_keys_sends_at_most_1000_a_request(minio_storage, s3, bucket):
    keys = [f"originals/i{n // 50}/d{n}" for n in range(1005)]
    semaphore = asyncio.Semaphore(16)

    async def stored(key: str) -> None:
        async with semaphore:
            await minio_storage.put(key, chunks_of(key.encode()), "image/jpeg")

    await asyncio.gather(*(stored(key) for key in keys))
    sent: list[int] = []
    delete_objects = minio_storage._client._delete_objects

    def counted(bucket_name, objects, **options):
        sent.append(len(objects))
        return delete_objects(bucket_name, objects, **options)

    minio_storage._client._delete_objects = counted
    await minio_storage.delete_many([*keys, "originals/missing"])
    assert sent == [1000, 6]
    assert list(s3.list_objects(bucket, recursive=True)) == []


def answering(storage: MinioImageStorage, *errors: DeleteError) -> None:
    """Make the server's DeleteObjects answer name ``errors`` (its request is still sent)."""
    delete_objects = Minio._delete_objects.__get__(storage._client)

    def answered(bucket_name, objects, **options):
        result = delete_objects(bucket_name, objects, **options)
        return DeleteResult(result.object_list, [*result.error_list, *errors])

    storage._client._delete_objects = answered


async def test_a_key_refused_in_a_delete_of_many_is_unavailable_and_a_missing_one_is_not(
    minio_storage,
):
    await minio_storage.put("k/a", chunks_of(b"a"), "image/png")
    answering(minio_storage, DeleteError("NoSuchKey", "gone", "k/gone", None))
    await minio_storage.delete_many(["k/a", "k/gone"])
    assert not await minio_storage.exists("k/a")
    answering(minio_storage, DeleteError("AccessDenied", "not yours", "k/b", None))
    with pytest.raises(DependencyUnavailable, match=r"'k/b'.*AccessDenied"):
        await minio_storage.delete_many(["k/b"])


async def test_the_bucket_is_made_on_open_and_reused_on_the_next(seaweedfs_server, s3, bucket):
    first = await open_storage(seaweedfs_server.env, bucket)
    try:
        await first.put("k/kept", chunks_of(b"kept"), "image/png")
    finally:
        await first.close()
    second = await open_storage(seaweedfs_server.env, bucket)
    try:
        assert await read(second, "k/kept") == b"kept"
        assert s3.bucket_exists(bucket)
    finally:
        await second.close()


async def test_a_closed_storage_is_unavailable(minio_storage):
    await minio_storage.close()
    with pytest.raises(DependencyUnavailable):
        await minio_storage.ping()
    with pytest.raises(DependencyUnavailable):
        await minio_storage.put("k/late", chunks_of(b"late"), "image/png")


async def test_a_missing_bucket_fails_ping_and_reads_as_not_found(minio_storage, s3, bucket):
    remove_bucket(s3, bucket)
    with pytest.raises(DependencyUnavailable, match="does not exist"):
        await minio_storage.ping()
    with pytest.raises(ObjectNotFound):
        await minio_storage.stat("k/any")
    # No put here: SeaweedFS makes a missing bucket on PUT where AWS answers NoSuchBucket.


async def test_wrong_credentials_are_unavailable_not_a_driver_error(seaweedfs_server, bucket):
    env = {**seaweedfs_server.env, "S3_SECRET_KEY": "not-the-secret"}
    with pytest.raises(DependencyUnavailable, match=r"SignatureDoesNotMatch|AccessDenied"):
        await open_storage(env, bucket)


async def within(seconds: float, call) -> None:
    start = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        await call
    assert time.monotonic() - start < seconds


async def eventually(call: Callable[[], Awaitable[bytes]], seconds: float = 20.0) -> bytes:
    # A restarted SeaweedFS answers S3 before its volume server has registered its volumes
    # again: reads fail with InternalError (DependencyUnavailable) for a moment.
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except DependencyUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_a_killed_server_is_unavailable_at_once_and_serves_again_after_restart(
    tmp_path: Path,
):
    handle = await asyncio.to_thread(devstack.start_seaweedfs, tmp_path / "seaweedfs")
    try:
        storage = await open_storage(handle.env, "restarts")
        try:
            await storage.put("k/kept", chunks_of(b"survives a crash"), "image/png")
            await asyncio.to_thread(devstack.kill, handle)

            await within(2.0, storage.ping())
            await within(2.5, storage.stat("k/kept"))
            await within(2.5, storage.exists("k/kept"))
            await within(2.5, read(storage, "k/kept"))
            await within(2.5, storage.delete("k/kept"))
            await within(2.5, storage.delete_many(["k/kept", "k/other"]))
            await within(2.5, storage.put("k/new", Stream(10 * MiB).chunks(), "image/png"))
            await within(2.5, open_storage(handle.env, "restarts"))

            handle = await asyncio.to_thread(devstack.restart, handle)
            await storage.ping()
            assert await eventually(lambda: read(storage, "k/kept")) == b"survives a crash"
            await storage.put("k/new", chunks_of(b"after"), "image/png")
            assert await read(storage, "k/new") == b"after"
        finally:
            await storage.close()
    finally:
        await asyncio.to_thread(devstack.stop, handle, timeout=2.0)
