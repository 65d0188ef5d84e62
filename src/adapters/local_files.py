"""Local files for storages that keep no objects on this host (memory, S3).

The processor reads and writes files: `copied` gives it a copy of an object
in the worker's scratch folder, and `put_file` stores a file it wrote and
removes it. A full or failing scratch disk is an outage (`StorageFull`,
`DependencyUnavailable`), not the image's fault.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from imagecore.errors import DependencyUnavailable, StorageFull, out_of_space
from imagecore.ports import StoredObject

__all__ = ["copied", "put_file", "scratch_disk"]

#: Chunk size of a copy into the scratch folder: most images then come in one chunk.
COPY_CHUNK = 1024 * 1024
_READ_CHUNK = 256 * 1024

Get = Callable[[str, int], AsyncIterable[bytes]]
Put = Callable[[str, AsyncIterable[bytes], str], Awaitable[StoredObject]]


@contextlib.contextmanager
def scratch_disk() -> Iterator[None]:
    """Translate the OS's errors on the scratch folder into `imagecore.errors`."""
    try:
        yield
    except OSError as exc:
        if out_of_space(exc):
            raise StorageFull("no space left in the scratch folder", str(exc)) from exc
        raise DependencyUnavailable("the scratch folder cannot be used", str(exc)) from exc


@contextlib.asynccontextmanager
async def copied(get: Get, key: str, scratch: Path) -> AsyncIterator[Path]:
    """The object ``key`` copied into ``scratch`` by ``get``; the copy is removed on exit."""
    path = scratch / f"{uuid.uuid4().hex}.in"
    try:
        with scratch_disk():
            scratch.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a caller's, maybe not made yet
            with path.open("wb") as out:
                async for chunk in get(key, COPY_CHUNK):
                    out.write(chunk)
        yield path
    finally:
        path.unlink(missing_ok=True)


async def put_file(put: Put, key: str, path: Path, content_type: str) -> StoredObject:
    """Store the file at ``path`` as ``key`` by ``put``; the file is removed, stored or not."""

    async def chunks() -> AsyncIterator[bytes]:
        with scratch_disk(), path.open("rb") as source:
            while block := source.read(_READ_CHUNK):
                yield block

    try:
        return await put(key, chunks(), content_type)
    finally:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink in the scratch folder
