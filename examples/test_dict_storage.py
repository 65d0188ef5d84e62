"""A storage of your own, checked by the storage contract: `pytest test_dict_storage.py`."""

import hashlib
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from imagecore import ObjectNotFound, StoredObject
from imagecore.testing.contracts import ImageStorageContract


class DictStorage:
    """An `imagecore.ImageStorage` in a dict: key -> (bytes, content type)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> StoredObject:
        data = b"".join([chunk async for chunk in chunks])
        self.objects[key] = (data, content_type)
        return await self.stat(key)

    async def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        self.objects[key] = (path.read_bytes(), content_type)
        path.unlink()
        return await self.stat(key)

    async def stat(self, key: str) -> StoredObject:
        if key not in self.objects:
            raise ObjectNotFound(key)
        data, content_type = self.objects[key]
        return StoredObject(key, len(data), hashlib.sha256(data).hexdigest(), content_type)

    async def fetch(
        self, key: str, chunk_size: int = 256 * 1024
    ) -> tuple[StoredObject, AsyncIterator[bytes]]:
        stored, (data, _) = await self.stat(key), self.objects[key]
        return stored, self._chunks(data, chunk_size)

    def get(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            _, parts = await self.fetch(key, chunk_size)
            async for part in parts:
                yield part

        return chunks()

    @staticmethod
    async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    @asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        await self.stat(key)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "copy")
            path.write_bytes(self.objects[key][0])
            yield path

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    async def ping(self) -> None:
        pass


class TestDictStorage(ImageStorageContract):
    @pytest.fixture
    def storage(self) -> DictStorage:
        return DictStorage()
