"""The filesystem storage: objects as files under one root, for a single host.

Layout: the object ``a/b/c`` is the file ``ROOT/objects/a/b/c``; its content
type and etag sit beside it in the sidecar ``ROOT/objects/a/b/.c.meta``.
Names starting with a dot are ours (sidecars, ``.c.<random>.tmp`` files of
writes in flight), which is why no part of a key may start with one.

A put streams into a temporary file in the object's directory, fsyncs it,
writes the sidecar (in place for a new object, whose sidecar nobody reads
before its data file exists; by rename when it replaces one), then renames
the data into place and fsyncs the directory. The data file alone says
whether an object exists; the sidecar is trusted only if it names the data
file's size and modification time. A crash between the two renames therefore
leaves the previous object (its sidecar keeps the previous record too) or,
if the sidecar is lost, an object whose etag is computed from its bytes
(SHA-256, cut to 128 bits) and whose content type is guessed from its key.
That is also why the sidecar's own bytes are not fsynced: a crash that tears
it is read as a lost sidecar.

A finished file on the same filesystem (a worker's output) is adopted
rather than copied: fsynced where it lies, described in its sidecar and
renamed into place, then the directory is fsynced, as for a put. A small
file (up to ``ON_LOOP``) is adopted or opened for reading on the event loop
itself, like the SQLite repository's point writes, while the disk answers
quickly; other blocking file work, puts included, goes to threads: a put's
fsyncs would hold every request for no less CPU
(docs/decisions/0004-filesystem-file-work-on-the-loop.md).

A put's etag is a random 128-bit token kept in the sidecar: it changes with
every put, which is all an HTTP validator needs, and costs no hash of the
content (docs/decisions/0005-filesystem-etag-random-token.md).

Why one module: writing, adopting and reading an object share one protocol
of temporary files, sidecars and fsyncs, which only holds if kept together.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import mimetypes
import os
import stat
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from adapters.local_files import put_file
from imagecore.errors import (
    DependencyUnavailable,
    ObjectNotFound,
    StorageFull,
    ValidationError,
    out_of_space,
)
from imagecore.ports import StoredObject

__all__ = ["FilesystemImageStorage", "validate_key"]

_MAX_PART = 200  # leaves room for our prefix and suffixes within the usual 255-byte name limit
_HASH_CHUNK = 1024 * 1024
_WRITE_BATCH = 1024 * 1024  # bytes gathered before a trip to a writing thread
_FALLBACK_TYPE = "application/octet-stream"
_COMMIT_LOCKS = tuple(threading.Lock() for _ in range(32))
#: Largest file adopted or opened for reading on the event loop rather than in a thread
#: (nearly every output). An adoption makes about twenty system calls, and in a thread
#: each one waits for the GIL to come back from the busy loop; on the loop, requests
#: wait for its two fsyncs, which a quick disk makes the cheaper wait (figures:
#: docs/decisions/0004-filesystem-file-work-on-the-loop.md). On a slower disk see
#: `_LoopFileWork`.
ON_LOOP = 1024 * 1024
#: Mean time of the adoptions on the loop above which they go back to threads.
SLOW_ON_LOOP = 0.003
#: While adoptions go to threads, every so many still runs on the loop, to look again.
_PROBE_EVERY = 64


def validate_key(key: str) -> tuple[str, ...]:
    """Return the parts of ``key``; raise `ValidationError` unless it is a safe relative path.

    Refused: empty keys and parts, absolute paths, ``.`` and ``..``, parts that
    start with a dot (reserved for our own files), backslashes, NUL and parts
    longer than 200 bytes.
    """
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValidationError(f"invalid storage key {key!r}")
    parts = tuple(key.split("/"))
    for part in parts:
        if not part or part.startswith(".") or len(part.encode()) > _MAX_PART:
            raise ValidationError(f"invalid storage key {key!r}: bad part {part!r}")
    return parts


@contextlib.contextmanager
def _translated(key: str, *, writing: bool = False) -> Iterator[None]:
    """Turn ``OSError`` into `imagecore.errors`, the one place this adapter does."""
    try:
        yield
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        if writing:
            # A part of the key is an object, or the key is a folder of objects.
            raise ValidationError(f"storage key {key!r} collides with another key") from exc
        raise ObjectNotFound(f"no object {key!r}") from exc
    except FileExistsError as exc:
        raise ValidationError(f"storage key {key!r} collides with another key") from exc
    except OSError as exc:
        if out_of_space(exc):
            raise StorageFull("the file storage's disk is full", str(exc)) from exc
        raise DependencyUnavailable("the file storage cannot serve now", str(exc)) from exc


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}.meta")


def _read_records(path: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads(_sidecar(path).read_bytes())
    except (OSError, ValueError):
        return []  # missing or torn: the data file is described from its bytes instead
    return records if isinstance(records, list) else []


def _find_record(records: list[dict[str, Any]], info: os.stat_result) -> dict[str, Any] | None:
    """The record describing the data file ``info``, if one surely does.

    Size and modification time must match. The inode must too, except for a
    lone record: a restored backup has new inodes, while two records (left by
    a put that died between its renames) may share a size and a clock tick.
    """
    same = [
        r
        for r in records
        if r.get("size") == info.st_size and r.get("mtime_ns") == info.st_mtime_ns
    ]
    exact = [r for r in same if r.get("inode") == info.st_ino]
    if exact:
        return exact[0]
    return same[0] if len(records) == 1 and same else None


def _write_unsynced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in place, without fsync (a new object's sidecar).

    Nobody reads a sidecar before its data file exists, so a new object's
    sidecar need not be replaced atomically: a write cut short by a crash is
    a torn sidecar, read as lost (see the module).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _replace_unsynced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` by rename, without fsync (for the sidecars: see the module)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def _extended(upload: _Upload | None, path: Path, batch: list[bytes]) -> _Upload:
    """`_Upload.extend` in a thread; cancelled meanwhile, what it began is removed."""
    work = asyncio.ensure_future(asyncio.to_thread(_Upload.extend, upload, path, batch))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        # The thread runs on regardless: a file it creates must not be left behind.
        work.add_done_callback(_discard_begun)
        raise


def _discard_begun(work: asyncio.Future[_Upload]) -> None:
    if not work.cancelled() and work.exception() is None:
        work.result().discard()


def _described(key: str, path: Path, file: io.BufferedReader) -> StoredObject:
    """The object whose data file ``path`` is open as ``file``; the file is left at its start."""
    # One open file: the size, the record and the hash all describe the same version.
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise FileNotFoundError(path)
    record = _find_record(_read_records(path), info)
    if record is not None:
        return StoredObject(key, info.st_size, record["etag"], record["content_type"])
    etag = _content_etag(file)
    file.seek(0)
    content_type = mimetypes.guess_type(key, strict=False)[0] or _FALLBACK_TYPE
    return StoredObject(key, info.st_size, etag, content_type)


def _open_described(
    key: str, path: Path, size: int
) -> tuple[StoredObject, io.BufferedReader, bytes]:
    file = path.open("rb")
    try:
        return _described(key, path, file), file, file.read(size)
    except BaseException:
        file.close()
        raise


def _new_etag() -> str:
    """The etag of a put: 128 random bits in hex."""
    return os.urandom(16).hex()


def _content_etag(file: io.BufferedReader) -> str:
    """The etag of an object whose sidecar was lost: its content's SHA-256, cut to 128 bits."""
    return hashlib.file_digest(file, hashlib.sha256).hexdigest()[:32]


class _Upload:
    """One put in flight: a temporary file in the object's directory."""

    def __init__(self, path: Path, temporary: Path, file: IO[bytes]) -> None:
        self.path = path
        self.size = 0
        self._temporary = temporary
        self._file = file

    @classmethod
    def begin(cls, path: Path) -> _Upload:
        for _ in range(3):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except FileNotFoundError:
                continue  # a delete pruned the empty folder in between: make it again
            return cls(path, Path(name), os.fdopen(fd, "wb"))
        raise FileNotFoundError(f"cannot create a file in {path.parent}")

    @classmethod
    def extend(cls, upload: _Upload | None, path: Path, chunks: list[bytes]) -> _Upload:
        """Write ``chunks`` to ``upload``, begun first if None (one trip to a thread)."""
        upload = upload or cls.begin(path)
        try:
            upload.write(b"".join(chunks))
        except BaseException:
            upload.discard()
            raise
        return upload

    @classmethod
    def whole(cls, path: Path, chunks: list[bytes], content_type: str) -> tuple[_Upload, str]:
        """Begin, write ``chunks`` and commit: an object that fits in one batch."""
        upload = cls.extend(None, path, chunks)
        try:
            return upload, upload.commit(content_type)
        except BaseException:
            upload.discard()
            raise

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.size += len(chunk)

    def commit(self, content_type: str) -> str:
        self._file.flush()
        os.fsync(self._file.fileno())
        info = os.fstat(self._file.fileno())
        self._file.close()
        return _commit(self.path, self._temporary, info, content_type)

    def discard(self) -> None:
        # Synchronous on purpose: it must run even in a task being cancelled.
        self._file.close()
        self._temporary.unlink(missing_ok=True)


def _adopted(path: Path, source: Path, content_type: str) -> tuple[int, str] | None:
    """Commit the finished file ``source`` as ``path`` by rename, with no copy; (size, etag).

    ``source`` is made private and fsynced where it lies, described in the
    sidecar and renamed into place. None, with ``source`` untouched, if it
    lies on another filesystem than ``path``.
    """
    with source.open("rb") as file:
        info = os.fstat(file.fileno())
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.stat().st_dev != info.st_dev:
            return None
        os.fchmod(file.fileno(), stat.S_IRUSR | stat.S_IWUSR)  # as mkstemp makes a put's
        os.fsync(file.fileno())
    return info.st_size, _commit(path, source, info, content_type)


def _commit(path: Path, data: Path, info: os.stat_result, content_type: str) -> str:
    """Describe the fsynced file ``data`` (``info``) in the sidecar, rename it to ``path``.

    The folder is fsynced after the rename; returns the new etag.
    """
    etag = _new_etag()
    record = {
        "content_type": content_type,
        "etag": etag,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "inode": info.st_ino,
    }
    # Two puts of one key in this process must not interleave their renames,
    # or the sidecar would describe the loser (other processes: see _find_record).
    with _COMMIT_LOCKS[hash(path) % len(_COMMIT_LOCKS)]:
        _describe_next(path, record)
        data.replace(path)
    _fsync_directory(path.parent)
    return etag


def _describe_next(path: Path, record: dict[str, Any]) -> None:
    """Write the sidecar of the object about to be renamed to ``path``."""
    try:
        current = path.stat()
    except FileNotFoundError:
        records, write = [record], _write_unsynced
    else:
        # Keep the record of the object being replaced: if we die before the data
        # rename, that object is still described rightly.
        found = _find_record(_read_records(path), current)
        records, write = [record, *([] if found is None else [found])], _replace_unsynced
    content = json.dumps(records).encode()
    for _ in range(2):
        try:
            write(_sidecar(path), content)
        except FileNotFoundError:
            # A delete pruned the empty folder since it was made (an adopted file
            # is not in it yet): make it again. Once the sidecar is in, it stays.
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            return
    write(_sidecar(path), content)


class _LoopFileWork:
    """Whether the next small adoption or read runs on the event loop: while the disk is quick.

    A disk whose fsyncs take tens of milliseconds (a busy or slow one) would hold
    up every request on the loop; its adoptions go to threads, where the wait
    costs nothing, and every ``_PROBE_EVERY``-th one runs on the loop to see
    whether the disk got quick again. Reads follow the adoptions' verdict.
    """

    def __init__(self) -> None:
        self.mean = 0.0  # seconds, exponentially weighted over the adoptions on the loop
        self._in_threads = 0

    def read_on_loop(self, size: int) -> bool:
        """Whether a read of a ``size``-byte file runs on the loop (it is not timed)."""
        return size <= ON_LOOP and self.mean <= SLOW_ON_LOOP

    def on_loop(self, size: int) -> bool:
        """Whether the adoption of a ``size``-byte file runs on the loop (then time it: `took`)."""
        if size > ON_LOOP:
            return False
        if self.mean <= SLOW_ON_LOOP:
            return True
        self._in_threads += 1
        if self._in_threads < _PROBE_EVERY:
            return False
        self._in_threads = 0
        return True

    def took(self, seconds: float) -> None:
        self.mean += (seconds - self.mean) / 10


class FilesystemImageStorage:
    """`ImageStorage` on a local directory: atomic puts, a sidecar per object.

    ``root`` is created on the first write; nothing touches the disk before
    that. Keys are relative paths of ``/``-separated parts (see
    `validate_key`; a bad key raises `ValidationError`), and one key cannot
    be a folder of another (``a`` and ``a/b``): that put raises
    `ValidationError`. Blocking file work runs in the default executor, one
    chunk at a time, so neither direction holds an object in memory; only a
    small file is adopted or opened on the event loop (``ON_LOOP``).
    Disk errors raise `DependencyUnavailable`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._objects = root / "objects"
        self._loop_work = _LoopFileWork()

    def _path(self, key: str) -> Path:
        return self._objects.joinpath(*validate_key(key))

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> StoredObject:
        path = self._path(key)
        upload: _Upload | None = None
        batch: list[bytes] = []
        batched = 0
        try:
            # Chunks go to the file a batch at a time: each trip to a thread costs
            # more than writing a chunk, and most images fit in one batch.
            # The caller's stream stays outside the translation: its errors pass unchanged.
            async for chunk in chunks:
                batch.append(chunk)
                batched += len(chunk)
                if batched >= _WRITE_BATCH:
                    with _translated(key, writing=True):
                        upload = await _extended(upload, path, batch)
                    batch, batched = [], 0
            with _translated(key, writing=True):
                if upload is None:
                    # The whole object came in one batch: write and commit in one trip
                    # (cancelled meanwhile, the thread still stores it whole or removes it).
                    whole = asyncio.to_thread(_Upload.whole, path, batch, content_type)
                    upload, etag = await whole
                else:
                    upload = await _extended(upload, path, batch)
                    etag = await asyncio.to_thread(upload.commit, content_type)
        except BaseException:
            if upload is not None:
                upload.discard()
            raise
        return StoredObject(key, upload.size, etag, content_type)

    async def adopt(self, key: str, path: Path, content_type: str) -> StoredObject | None:
        """Move the finished file at ``path`` in as ``key``, or None if it is elsewhere.

        None, with ``path`` untouched, when ``path`` is on another filesystem.
        """
        target = self._path(key)
        with _translated(key, writing=True):
            if self._loop_work.on_loop(path.stat().st_size):  # noqa: ASYNC240 - see ON_LOOP
                started = time.perf_counter()
                adopted = _adopted(target, path, content_type)
                self._loop_work.took(time.perf_counter() - started)
            else:
                # Cancelled meanwhile, the thread still stores it whole or leaves it out.
                adopted = await asyncio.to_thread(_adopted, target, path, content_type)
        if adopted is None:
            return None
        size, etag = adopted
        return StoredObject(key, size, etag, content_type)

    async def stat(self, key: str) -> StoredObject:
        path = self._path(key)
        with _translated(key):
            return await asyncio.to_thread(self._describe, key, path)

    @staticmethod
    def _describe(key: str, path: Path) -> StoredObject:
        with path.open("rb") as file:
            return _described(key, path, file)

    async def fetch(
        self, key: str, chunk_size: int = 256 * 1024
    ) -> tuple[StoredObject, AsyncGenerator[bytes, None]]:
        path = self._path(key)
        with _translated(key):
            # Described and read at once from one open file (one version): on the loop
            # for a small file (hashed there at worst, if its sidecar was lost), else
            # in one trip to a thread.
            if self._loop_work.read_on_loop(path.stat().st_size):
                stored, file, chunk = _open_described(key, path, chunk_size)
            else:
                opening = asyncio.to_thread(_open_described, key, path, chunk_size)
                stored, file, chunk = await opening
        return stored, self._stream(key, file, chunk, chunk_size)

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        """The object's own data file, not a copy (one stat on the event loop: a local disk)."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r}")
        yield path

    async def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        """Moved in when ``path`` is on this storage's filesystem, else copied in."""
        if (adopted := await self.adopt(key, path, content_type)) is not None:
            return adopted
        return await put_file(self.put, key, path, content_type)

    async def get(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        # Most objects are one chunk: opened, described and read at once (`fetch`).
        _, chunks = await self.fetch(key, chunk_size)
        async with contextlib.aclosing(chunks) as parts:
            async for part in parts:
                yield part

    @staticmethod
    async def _stream(
        key: str, file: IO[bytes], chunk: bytes, chunk_size: int
    ) -> AsyncGenerator[bytes, None]:
        """``chunk``, read from ``file`` already, then the rest of it; the file is closed after."""
        try:
            while chunk:
                yield chunk
                if len(chunk) < chunk_size:
                    return  # a short read of a regular file is its end
                with _translated(key):
                    chunk = await asyncio.to_thread(file.read, chunk_size)
        finally:
            file.close()

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with _translated(key):
            await asyncio.to_thread(self._remove, [path])

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with _translated("(delete)"):
            await asyncio.to_thread(self._remove_keys, keys)

    def _remove_keys(self, keys: Sequence[str]) -> None:
        # In the thread too: a cleanup batch's keys cost the loop milliseconds.
        self._remove([self._path(key) for key in keys])  # every key checked before any goes

    def _remove(self, paths: Sequence[Path]) -> None:
        for path in paths:
            # Data first: once it is gone the object is gone, whatever happens to the sidecar.
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
                path.unlink()
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                _sidecar(path).unlink()
        # Prune folders left empty, so that cleaned instructions leave no trace: each
        # folder once, deepest first, so that a folder goes after the folders inside it.
        by_depth: dict[int, set[Path]] = {}
        for path in paths:
            by_depth.setdefault(len(path.parent.parts), set()).add(path.parent)
        for depth in range(max(by_depth), len(self._objects.parts), -1):
            for folder in by_depth.pop(depth, ()):
                try:
                    folder.rmdir()
                except OSError:
                    continue
                by_depth.setdefault(depth - 1, set()).add(folder.parent)

    async def exists(self, key: str) -> bool:
        path = self._path(key)
        with _translated(key):
            return await asyncio.to_thread(path.is_file)

    async def ping(self) -> None:
        try:
            await asyncio.to_thread(self._probe)
        except OSError as exc:
            if out_of_space(exc):
                raise StorageFull("the file storage's disk is full", str(exc)) from exc
            raise DependencyUnavailable(
                "the file storage is not writable", f"{self.root}: {exc}"
            ) from exc

    def _probe(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.root, prefix=".ping."):
            pass

    async def total_bytes(self) -> int:
        """How many bytes the stored objects hold (for metrics; walks the tree)."""
        with _translated("(usage)"):
            return sum(size for _, size in await asyncio.to_thread(self._walk))

    async def keys(self) -> list[str]:
        """Every stored key, sorted (walks the tree; for tests, tools and embedders)."""
        with _translated("(keys)"):
            return sorted(key for key, _ in await asyncio.to_thread(self._walk))

    def _walk(self) -> list[tuple[str, int]]:
        found = []
        for folder, _, names in os.walk(self._objects):
            for name in names:
                if name.startswith("."):
                    continue
                path = Path(folder, name)
                key = path.relative_to(self._objects).as_posix()
                with contextlib.suppress(FileNotFoundError):  # deleted while we walk
                    found.append((key, path.stat().st_size))
        return found

    async def sweep(self, older_than: float = 3600.0) -> int:
        """Remove leftovers of writes that died: temporary files and sidecars without data.

        Only files untouched for ``older_than`` seconds go, so writes in flight
        are safe. Returns how many files were removed.
        """
        with _translated("(sweep)"):
            return await asyncio.to_thread(self._sweep, time.time() - older_than)

    def _sweep(self, cutoff: float) -> int:
        removed = 0
        for folder, _, names in os.walk(self._objects):
            for name in names:
                path = Path(folder, name)
                leftover = name.endswith(".tmp") or (
                    name.endswith(".meta") and not path.with_name(name[1:-5]).exists()
                )
                if not name.startswith(".") or not leftover:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
        return removed
