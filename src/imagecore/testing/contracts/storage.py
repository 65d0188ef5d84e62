"""The `ImageStorage` contract: subclass with a ``storage`` fixture to run it on an adapter."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagecore.errors import ObjectNotFound
from imagecore.ports import ImageStorage


async def _chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _read(storage: ImageStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.get(key)])


async def _stored(storage: ImageStorage, key: str) -> bool:
    try:
        await storage.stat(key)
    except ObjectNotFound:
        return False
    return True


class ImageStorageContract:
    """Behaviour every storage adapter must show."""

    # Async tests under pytest-asyncio's strict mode too (the default of a new project).
    pytestmark = pytest.mark.asyncio

    async def test_a_stored_photo_reads_back_byte_for_byte(self, storage: ImageStorage) -> None:
        photo = os.urandom(3 * 1024 * 1024 + 17)
        stored = await storage.put("originals/u1/i1/d1", _chunks(photo), "image/jpeg")
        assert stored.size == len(photo)
        assert stored.key == "originals/u1/i1/d1"
        assert await _read(storage, "originals/u1/i1/d1") == photo

    async def test_stat_describes_the_object(self, storage: ImageStorage) -> None:
        data = b"\xff\xd8\xff" + os.urandom(5000)
        put = await storage.put("outputs/u1/i1/d1.jpg", _chunks(data), "image/jpeg")
        stat = await storage.stat("outputs/u1/i1/d1.jpg")
        assert (stat.size, stat.content_type) == (len(data), "image/jpeg")
        assert stat.etag == put.etag
        assert stat.etag

    async def test_a_second_put_replaces_the_first(self, storage: ImageStorage) -> None:
        await storage.put("k/replace", _chunks(b"first version"), "image/png")
        await storage.put("k/replace", _chunks(b"second"), "image/png")
        assert await _read(storage, "k/replace") == b"second"
        assert (await storage.stat("k/replace")).size == len(b"second")

    async def test_different_content_has_a_different_etag(self, storage: ImageStorage) -> None:
        a = await storage.put("k/a", _chunks(b"a" * 100), "image/png")
        b = await storage.put("k/b", _chunks(b"b" * 100), "image/png")
        assert a.etag != b.etag

    async def test_a_local_copy_holds_the_object_while_it_is_held(
        self, storage: ImageStorage
    ) -> None:
        photo = os.urandom(300_000)
        await storage.put("originals/u1/i1/local", _chunks(photo), "image/jpeg")
        async with storage.local_copy("originals/u1/i1/local") as path:
            assert path.read_bytes() == photo
        # A copy is removed on exit; a backend's own file stays with its object.
        assert not path.exists() or path.read_bytes() == photo
        assert await _read(storage, "originals/u1/i1/local") == photo

    async def test_a_local_copy_of_a_missing_object_raises_object_not_found(
        self, storage: ImageStorage
    ) -> None:
        with pytest.raises(ObjectNotFound):
            async with storage.local_copy("nothing/here"):
                pass

    async def test_a_put_file_is_stored_and_gone(
        self, storage: ImageStorage, tmp_path: Path
    ) -> None:
        data = b"\xff\xd8\xff" + os.urandom(40_000)
        source = tmp_path / "d1.out"
        source.write_bytes(data)
        stored = await storage.put_file("outputs/i1/d1.jpg", source, "image/jpeg")
        assert not source.exists()
        assert (stored.key, stored.size, stored.content_type) == (
            "outputs/i1/d1.jpg",
            len(data),
            "image/jpeg",
        )
        assert await storage.stat("outputs/i1/d1.jpg") == stored
        assert await _read(storage, "outputs/i1/d1.jpg") == data

    async def test_a_put_file_replaces_the_object_as_a_put_does(
        self, storage: ImageStorage, tmp_path: Path
    ) -> None:
        first = await storage.put("outputs/i1/d2.png", _chunks(b"first version"), "image/png")
        source = tmp_path / "d2.out"
        source.write_bytes(b"second")
        stored = await storage.put_file("outputs/i1/d2.png", source, "image/png")
        assert stored.etag != first.etag
        assert await _read(storage, "outputs/i1/d2.png") == b"second"
        assert await storage.stat("outputs/i1/d2.png") == stored

    async def test_reading_a_missing_object_raises_object_not_found(
        self, storage: ImageStorage
    ) -> None:
        with pytest.raises(ObjectNotFound):
            await _read(storage, "nothing/here")
        with pytest.raises(ObjectNotFound):
            await storage.stat("nothing/here")
        with pytest.raises(ObjectNotFound):
            await storage.fetch("nothing/here")

    async def test_fetch_describes_and_streams_the_object(self, storage: ImageStorage) -> None:
        data = os.urandom(700_000)
        put = await storage.put("k/fetched", _chunks(data), "image/webp")
        stored, chunks = await storage.fetch("k/fetched", chunk_size=64 * 1024)
        assert stored == put == await storage.stat("k/fetched")
        parts = [chunk async for chunk in chunks]
        assert len(parts) > 1
        assert b"".join(parts) == data
        empty = await storage.put("k/fetched-empty", _chunks(b""), "image/png")
        stored, chunks = await storage.fetch("k/fetched-empty")
        assert stored == empty
        assert [chunk async for chunk in chunks] == []

    async def test_fetch_streams_the_version_it_describes(self, storage: ImageStorage) -> None:
        old = os.urandom(300_000)
        await storage.put("k/versions", _chunks(old), "image/jpeg")
        stored, chunks = await storage.fetch("k/versions", chunk_size=64 * 1024)
        first = await anext(chunks)
        new = await storage.put("k/versions", _chunks(b"new version"), "image/png")
        rest = [chunk async for chunk in chunks]
        assert (stored.size, stored.content_type) == (len(old), "image/jpeg")
        assert stored.etag != new.etag
        assert first + b"".join(rest) == old

    async def test_delete_is_idempotent(self, storage: ImageStorage) -> None:
        await storage.put("k/gone", _chunks(b"x"), "image/gif")
        assert await _stored(storage, "k/gone")
        await storage.delete("k/gone")
        await storage.delete("k/gone")
        assert not await _stored(storage, "k/gone")
        with pytest.raises(ObjectNotFound):
            await storage.stat("k/gone")

    async def test_delete_many_deletes_every_object_named_and_no_other(
        self, storage: ImageStorage
    ) -> None:
        named = ["originals/i1/d1", "outputs/i1/d1.webp", "originals/i1/d2"]
        for key in [*named, "originals/i1/d3", "originals/i2/d1"]:
            await storage.put(key, _chunks(key.encode()), "image/jpeg")
        # A missing object among them is no error, and neither is a second call.
        await storage.delete_many([*named, "nothing/here"])
        await storage.delete_many(named)
        await storage.delete_many([])
        for key in named:
            assert not await _stored(storage, key)
        assert await _read(storage, "originals/i1/d3") == b"originals/i1/d3"
        assert await _read(storage, "originals/i2/d1") == b"originals/i2/d1"

    async def test_an_upload_that_breaks_off_leaves_nothing(self, storage: ImageStorage) -> None:
        class DroppedError(Exception):
            pass

        async def broken() -> AsyncIterator[bytes]:
            yield os.urandom(100_000)
            raise DroppedError

        with pytest.raises(DroppedError):
            await storage.put("k/broken", broken(), "image/jpeg")
        assert not await _stored(storage, "k/broken")

    async def test_an_empty_object_is_stored(self, storage: ImageStorage) -> None:
        stored = await storage.put("k/empty", _chunks(b""), "application/octet-stream")
        assert stored.size == 0
        assert await _read(storage, "k/empty") == b""

    async def test_reads_stream_in_several_chunks(self, storage: ImageStorage) -> None:
        data = os.urandom(1024 * 1024)
        await storage.put("k/chunks", _chunks(data), "image/webp")
        parts = [chunk async for chunk in storage.get("k/chunks", chunk_size=64 * 1024)]
        assert len(parts) > 1
        assert hashlib.sha256(b"".join(parts)).digest() == hashlib.sha256(data).digest()

    async def test_ping_answers(self, storage: ImageStorage) -> None:
        await storage.ping()
