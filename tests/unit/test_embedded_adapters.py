"""The embedded adapters of ``imagecore serve``: SQLite and the filesystem.

Both pass the contract suites; the tests below cover what the contract cannot
see: data surviving a restart, WAL, keys that try to leave the root and the
leftovers of a process that died mid-write.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import attrs
import pytest

from adapters import filesystem
from adapters.filesystem import FilesystemImageStorage
from adapters.sqlite.repository import SqliteInstructionRepository
from adapters.sqlite.schema import SCHEMA_VERSION
from imagecore.errors import (
    ConflictError,
    DependencyUnavailable,
    NotFound,
    ObjectNotFound,
    ValidationError,
)
from imagecore.ports import DetailQuery
from imagecore.testing.contracts.factories import at, detail, instruction
from imagecore.testing.contracts.repository import (
    InstructionRepositoryContract,
    check_everything_survives_reopening,
)
from imagecore.testing.contracts.storage import ImageStorageContract


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(storage: FilesystemImageStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.get(key)])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "imagecore.sqlite3"


@pytest.fixture
async def sqlite_repo(db_path: Path) -> AsyncIterator[SqliteInstructionRepository]:
    repo = await SqliteInstructionRepository.open(db_path)
    yield repo
    await repo.close()


@pytest.fixture
def files(tmp_path: Path) -> FilesystemImageStorage:
    return FilesystemImageStorage(tmp_path / "files")


class TestFilesystemImageStorage(ImageStorageContract):
    @pytest.fixture
    def storage(self, files: FilesystemImageStorage) -> FilesystemImageStorage:
        return files


class TestSqliteInstructionRepository(InstructionRepositoryContract):
    @pytest.fixture
    def repo(self, sqlite_repo: SqliteInstructionRepository) -> SqliteInstructionRepository:
        return sqlite_repo


# --------------------------------------------------------------------------- sqlite


async def test_everything_survives_closing_and_reopening_the_database(db_path: Path) -> None:
    await check_everything_survives_reopening(lambda: SqliteInstructionRepository.open(db_path))


async def test_the_database_is_in_wal_mode_with_the_current_schema(
    sqlite_repo: SqliteInstructionRepository, db_path: Path
) -> None:
    await sqlite_repo.add_instruction(instruction())
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    other.close()
    assert db_path.with_name(db_path.name + "-wal").exists()


async def test_concurrent_claims_from_two_connections_have_exactly_one_winner(
    sqlite_repo: SqliteInstructionRepository, db_path: Path
) -> None:
    other = await SqliteInstructionRepository.open(db_path)
    try:
        job = instruction()
        await sqlite_repo.add_instruction(job)
        file = detail(job)
        await sqlite_repo.add_detail(file)
        claims = [file.claim(f"lease-{n}", at(1), at(61)) for n in range(40)]
        repos = [sqlite_repo, other]
        results = await asyncio.gather(
            *(repos[n % 2].update_detail(claim) for n, claim in enumerate(claims))
        )
        assert sum(results) == 1
        assert await other.get_detail(file.id) == claims[results.index(True)]
    finally:
        await other.close()


async def test_a_batch_of_detail_writes_is_one_transaction_on_the_thread(
    sqlite_repo: SqliteInstructionRepository,
) -> None:
    job = instruction()
    await sqlite_repo.add_instruction(job)
    files = [detail(job, created=n, name=f"{n}.jpg") for n in range(5)]
    for file in files:
        await sqlite_repo.add_detail(file)
    statements: list[str] = []
    sqlite_repo._connection.set_trace_callback(statements.append)
    entered = entered_thread(sqlite_repo)
    try:
        claims = [file.claim("lease", at(1), at(61)) for file in files]
        assert await sqlite_repo.update_details(claims) == 5
    finally:
        sqlite_repo._connection.set_trace_callback(None)
    # Its cost grows with the batch: not on the event loop, and one commit for all.
    assert entered.is_set()
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]


async def test_a_detail_of_an_unknown_instruction_is_not_found(
    sqlite_repo: SqliteInstructionRepository,
) -> None:
    with pytest.raises(NotFound):
        await sqlite_repo.add_detail(detail(instruction()))


async def test_a_reused_id_is_a_conflict_and_the_first_record_stays(
    sqlite_repo: SqliteInstructionRepository,
) -> None:
    job = instruction("alice")
    await sqlite_repo.add_instruction(job)
    with pytest.raises(ConflictError):
        await sqlite_repo.add_instruction(attrs.evolve(job, user_id="bob"))
    assert await sqlite_repo.get_instruction(job.id) == job


async def test_times_keep_their_microseconds(sqlite_repo: SqliteInstructionRepository) -> None:
    job = instruction()
    await sqlite_repo.add_instruction(job)
    file = detail(job)
    await sqlite_repo.add_detail(file)
    precise = file.claim("lease", at(1).replace(microsecond=123_457), at(61))
    assert await sqlite_repo.update_detail(precise)
    assert await sqlite_repo.get_detail(file.id) == precise
    found = await sqlite_repo.find_details(DetailQuery(updated_before=precise.updated_at))
    assert found == []


async def test_a_closed_repository_is_unavailable(db_path: Path) -> None:
    repo = await SqliteInstructionRepository.open(db_path)
    await repo.close()
    await repo.close()
    with pytest.raises(DependencyUnavailable):
        await repo.ping()


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(os.urandom(8192))
    with pytest.raises(DependencyUnavailable):
        await SqliteInstructionRepository.open(garbage)


async def test_a_database_from_a_newer_imagecore_is_refused(db_path: Path) -> None:
    repo = await SqliteInstructionRepository.open(db_path)
    await repo.close()
    with sqlite3.connect(db_path) as newer:
        newer.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(DependencyUnavailable, match="schema version"):
        await SqliteInstructionRepository.open(db_path)


@pytest.fixture
def blocker(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the database, to hold its write lock with."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(db_path, isolation_level=None)
    yield connection
    connection.close()


@contextlib.asynccontextmanager
async def opened(db_path: Path, busy_timeout: float) -> AsyncIterator[SqliteInstructionRepository]:
    repo = await SqliteInstructionRepository.open(db_path, busy_timeout=busy_timeout)
    try:
        yield repo
    finally:
        await repo.close()


async def test_a_writer_holding_the_lock_past_the_timeout_makes_it_unavailable(
    db_path: Path, blocker: sqlite3.Connection
) -> None:
    async with opened(db_path, 0.05) as repo:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DependencyUnavailable):
            await repo.add_instruction(instruction())
        blocker.execute("ROLLBACK")
        await repo.add_instruction(instruction())


def entered_thread(repo: SqliteInstructionRepository) -> threading.Event:
    """Set once the repository's thread starts a call: from then on it runs to its end."""
    entered = threading.Event()
    patiently = repo._patiently

    def noted(call: Callable[[], object]) -> object:
        entered.set()
        return patiently(call)

    repo._patiently = noted  # type: ignore[method-assign]
    return entered


#: The lock waits of the tests below: far longer than a few turns of the loop take.
BUSY = 30.0


async def turns(count: int = 3) -> float:
    """Let the loop run other tasks' steps; how long that took (a blocked loop takes ~BUSY)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(count):
        await asyncio.sleep(0)
    return loop.time() - started


async def test_a_write_that_meets_another_writers_lock_waits_on_the_thread_not_the_loop(
    db_path: Path, blocker: sqlite3.Connection
) -> None:
    async with opened(db_path, BUSY) as repo:
        blocker.execute("BEGIN IMMEDIATE")
        waiting = instruction()
        write = asyncio.create_task(repo.add_instruction(waiting))
        # Waiting on the loop, the write's first step would hold it until the lock
        # timed out.
        assert await turns() < BUSY / 2, "the event loop was blocked by the lock"
        assert not write.done()
        blocker.execute("ROLLBACK")
        await write
        assert await repo.get_instruction(waiting.id) == waiting


async def test_a_call_cancelled_on_the_thread_keeps_later_calls_off_the_connection_until_it_ends(
    db_path: Path, blocker: sqlite3.Connection
) -> None:
    stored, cancelled = instruction(), instruction()
    async with opened(db_path, BUSY) as repo:
        await repo.add_instruction(stored)
        entered = entered_thread(repo)
        blocker.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(repo.add_instruction(cancelled))
        assert await asyncio.to_thread(entered.wait, 60)  # it now waits for the lock there
        write.cancel()
        with pytest.raises(asyncio.CancelledError):
            await write
        read = asyncio.create_task(repo.get_instruction(stored.id))
        # Run here, the read would wait on the connection the thread holds.
        assert await turns() < BUSY / 2, "the event loop was blocked by the thread's call"
        assert not read.done()
        blocker.execute("ROLLBACK")
        assert await read == stored
        # The cancelled write ran to its end on the thread, before the read.
        assert await repo.get_instruction(cancelled.id) == cancelled


# --------------------------------------------------------------------------- filesystem


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../outside",
    "originals/../../outside",
    "a//b",
    "a/",
    "a/./b",
    ".hidden",
    "a/.kite.jpg.meta",
    "a\\b",
    "a\x00b",
    "x" * 201,
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_that_could_leave_the_root_are_refused(
    files: FilesystemImageStorage, tmp_path: Path, key: str
) -> None:
    with pytest.raises(ValidationError):
        await files.put(key, chunks(b"payload"), "image/png")
    for call in (files.stat, files.exists, files.delete):
        with pytest.raises(ValidationError):
            await call(key)
    # Every key of a batch is checked before any object is deleted.
    await files.put("k/kept", chunks(b"payload"), "image/png")
    with pytest.raises(ValidationError):
        await files.delete_many(["k/kept", key])
    assert await files.exists("k/kept")
    with pytest.raises(ValidationError):
        await read(files, key)
    assert not (tmp_path / "outside").exists()


async def test_a_key_inside_another_key_is_refused(files: FilesystemImageStorage) -> None:
    await files.put("outputs/kite.jpg", chunks(b"jpeg"), "image/jpeg")
    with pytest.raises(ValidationError):
        await files.put("outputs/kite.jpg/thumb", chunks(b"x"), "image/jpeg")
    with pytest.raises(ValidationError):
        await files.put("outputs", chunks(b"x"), "image/jpeg")
    assert await files.keys() == ["outputs/kite.jpg"]
    assert not await files.exists("outputs")


async def test_objects_survive_a_new_storage_on_the_same_root(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    put = await FilesystemImageStorage(tmp_path).put("o/kite.webp", chunks(data), "image/webp")
    again = FilesystemImageStorage(tmp_path)
    assert await again.stat("o/kite.webp") == put
    assert re.fullmatch("[0-9a-f]{32}", put.etag)
    assert await read(again, "o/kite.webp") == data


async def test_an_adopted_file_is_kept_like_a_put_one(tmp_path: Path) -> None:
    files = FilesystemImageStorage(tmp_path / "files")
    put = await files.put("outputs/i1/a.jpg", chunks(b"jpeg"), "image/jpeg")
    source = tmp_path / "b.out"
    source.write_bytes(b"another jpeg")
    source.chmod(0o644)
    adopted = await files.adopt("outputs/i1/b.jpg", source, "image/jpeg")
    assert adopted is not None
    assert re.fullmatch("[0-9a-f]{32}", adopted.etag)
    assert adopted.etag != put.etag
    # Described by its sidecar after a restart, private as a put's file, no temporary left.
    assert await FilesystemImageStorage(tmp_path / "files").stat("outputs/i1/b.jpg") == adopted
    folder = tmp_path / "files" / "objects" / "outputs" / "i1"
    assert (folder / "a.jpg").stat().st_mode == (folder / "b.jpg").stat().st_mode
    assert sorted(p.name for p in folder.iterdir()) == [
        ".a.jpg.meta",
        ".b.jpg.meta",
        "a.jpg",
        "b.jpg",
    ]


async def test_an_adoption_whose_empty_folder_is_pruned_meanwhile_makes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A delete of the folder's last object prunes it between the adoption's mkdir
    # and its sidecar: the folder is made again and the file still adopted.
    files = FilesystemImageStorage(tmp_path / "files")
    write = filesystem._write_unsynced
    pruned: list[Path] = []

    def prune_first(path: Path, data: bytes) -> None:
        if not pruned:
            path.parent.rmdir()
            pruned.append(path.parent)
        write(path, data)

    monkeypatch.setattr(filesystem, "_write_unsynced", prune_first)
    source = tmp_path / "c.out"
    source.write_bytes(b"jpeg")
    adopted = await files.adopt("outputs/i2/c.jpg", source, "image/jpeg")
    assert pruned == [tmp_path / "files" / "objects" / "outputs" / "i2"]
    assert adopted is not None
    assert await files.stat("outputs/i2/c.jpg") == adopted
    assert await read(files, "outputs/i2/c.jpg") == b"jpeg"
    assert not source.exists()


class _Threads:
    """Counts the trips to a thread the filesystem storage makes (``asyncio.to_thread``).

    It also knows when every call sent to a thread has ended: a caller
    cancelled meanwhile stops waiting, but a call already started runs on.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.trips = 0
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-storage")
        self._calls: list[Future[object]] = []

        async def counted(func: Callable[..., object], *args: object, **kwargs: object) -> object:
            self.trips += 1
            call = self._pool.submit(contextvars.copy_context().run, func, *args, **kwargs)
            self._calls.append(call)
            return await asyncio.wrap_future(call)

        # asyncio's own, which the module looks up at each call.
        monkeypatch.setattr(filesystem.asyncio, "to_thread", counted)

    async def ended(self, seconds: float = 60) -> None:
        """Wait until every call sent to a thread has ended (or was cancelled before it began)."""
        calls = list(self._calls)
        loop = asyncio.get_running_loop()
        _, running = await loop.run_in_executor(None, futures.wait, calls, seconds)
        assert not running, "a thread call did not end"

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Threads]:
    threads = _Threads(monkeypatch)
    yield threads
    threads.close()


class _DiskClock:
    """Stands in for the clock the filesystem storage times its adoptions on the loop with.

    Each adoption takes ``per_adoption`` seconds by it, whatever the disk under
    the test does: the verdicts below must not follow a busy machine's fsyncs.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.per_adoption = 0.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()  # the wall clock, for the sweep of temporary files


@pytest.fixture
def disk_clock(monkeypatch: pytest.MonkeyPatch) -> _DiskClock:
    clock = _DiskClock()
    monkeypatch.setattr(filesystem, "time", clock)
    adopted = filesystem._adopted

    def timed(path: Path, source: Path, content_type: str) -> tuple[int, str] | None:
        clock.now += clock.per_adoption
        return adopted(path, source, content_type)

    monkeypatch.setattr(filesystem, "_adopted", timed)
    return clock


async def _adopt_new(files: FilesystemImageStorage, folder: Path, key: str, size: int) -> None:
    """Adopt a new ``size``-byte file as ``key``, and read it back."""
    source = folder / f"{key.replace('/', '-')}.out"
    source.write_bytes(b"j" * size)
    adopted = await files.adopt(key, source, "image/jpeg")
    assert adopted is not None
    assert adopted.size == size
    assert await read(files, key) == b"j" * size


@pytest.mark.usefixtures("disk_clock")
async def test_a_small_file_is_adopted_on_the_loop_a_large_one_in_a_thread(
    files: FilesystemImageStorage,
    threads: _Threads,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(filesystem, "ON_LOOP", 8)
    await _adopt_new(files, tmp_path, "outputs/i1/small.jpg", 8)
    assert threads.trips == 0  # adopted and read back on the loop
    await _adopt_new(files, tmp_path, "outputs/i1/large.jpg", 9)
    assert threads.trips == 2  # adopted in one, opened for reading in another


@pytest.mark.usefixtures("disk_clock")
async def test_a_small_object_is_read_on_the_loop_and_every_put_in_a_thread(
    files: FilesystemImageStorage,
    threads: _Threads,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(filesystem, "ON_LOOP", 8)
    await files.put("originals/i1/small", chunks(b"s" * 8), "image/jpeg")
    assert threads.trips == 1  # written and committed in one trip
    assert await read(files, "originals/i1/small") == b"s" * 8
    assert threads.trips == 1
    await files.put("originals/i1/large", chunks(b"l" * 9), "image/jpeg")
    assert threads.trips == 2
    assert await read(files, "originals/i1/large") == b"l" * 9
    assert threads.trips == 3


async def test_adoptions_and_reads_go_to_threads_while_the_disk_is_slow_and_come_back(
    files: FilesystemImageStorage,
    threads: _Threads,
    disk_clock: _DiskClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(filesystem, "_PROBE_EVERY", 4)
    adopted_on_loop: list[bool] = []
    adopted = filesystem._adopted

    def noted(path: Path, source: Path, content_type: str) -> tuple[int, str] | None:
        adopted_on_loop.append(threading.current_thread() is threading.main_thread())
        return adopted(path, source, content_type)

    async def on_loop(folder: str, count: int) -> tuple[list[bool], list[bool]]:
        """Whether each adoption ran on the loop, and whether each read back did."""
        adopted_on_loop.clear()
        read_on_loop = []
        for index in range(count):
            before = threads.trips
            await _adopt_new(files, tmp_path, f"outputs/{folder}/{index}.jpg", 4)
            read_trips = threads.trips - before - (0 if adopted_on_loop[-1] else 1)
            read_on_loop.append(read_trips == 0)
        return list(adopted_on_loop), read_on_loop

    monkeypatch.setattr(filesystem, "_adopted", noted)
    disk_clock.per_adoption = filesystem.SLOW_ON_LOOP * 20
    # One slow adoption on the loop brings the mean above the limit: the next go to
    # threads, but for one in every _PROBE_EVERY, which looks again on the loop.
    # Every read back follows the slow verdict.
    adoptions, reads = await on_loop("i1", 9)
    assert adoptions == [True, False, False, False, True, False, False, False, True]
    assert not any(reads)
    # The disk is quick again: the probes bring the mean down, adoptions and reads
    # back to the loop.
    disk_clock.per_adoption = 0.0
    adoptions, reads = await on_loop("i2", 100)
    assert adoptions[0] is False
    assert all(adoptions[-8:])
    assert all(reads[-8:])


async def test_a_file_on_another_filesystem_is_left_for_a_put(tmp_path: Path) -> None:
    shm = Path("/dev/shm")  # noqa: S108 - only as a second filesystem, a file of our own
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's folder")
    files = FilesystemImageStorage(tmp_path / "files")
    with tempfile.NamedTemporaryFile(dir=shm) as elsewhere:
        elsewhere.write(b"jpeg")
        elsewhere.flush()
        assert await files.adopt("outputs/i1/far.jpg", Path(elsewhere.name), "image/jpeg") is None
        assert Path(elsewhere.name).read_bytes() == b"jpeg"
    assert await files.keys() == []
    assert list((tmp_path / "files" / "objects" / "outputs" / "i1").iterdir()) == []


async def test_an_adopted_file_inside_another_key_is_refused_and_left(tmp_path: Path) -> None:
    files = FilesystemImageStorage(tmp_path / "files")
    await files.put("outputs/kite.jpg", chunks(b"jpeg"), "image/jpeg")
    source = tmp_path / "thumb.out"
    source.write_bytes(b"x")
    with pytest.raises(ValidationError):
        await files.adopt("outputs/kite.jpg/thumb", source, "image/jpeg")
    assert source.read_bytes() == b"x"
    assert await files.keys() == ["outputs/kite.jpg"]


async def test_a_temporary_file_left_by_a_dead_write_is_no_object(
    files: FilesystemImageStorage, tmp_path: Path
) -> None:
    await files.put("originals/i1/d1", chunks(b"whole"), "image/png")
    leftover = tmp_path / "files" / "objects" / "originals" / "i1" / ".d2.k3j4.tmp"
    leftover.write_bytes(b"half an upl")
    assert await files.keys() == ["originals/i1/d1"]
    assert await files.total_bytes() == len(b"whole")
    assert not await files.exists("originals/i1/d2")
    assert await files.sweep(older_than=3600) == 0  # it may still be in flight
    assert await files.sweep(older_than=-1) == 1
    assert not leftover.exists()
    assert await read(files, "originals/i1/d1") == b"whole"


async def test_a_write_that_dies_before_its_data_rename_leaves_the_old_object(
    files: FilesystemImageStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await files.put("outputs/kite.png", chunks(b"old picture"), "image/png")
    rename = Path.replace

    def die_on_data_rename(self: Path, target: Path) -> Path:
        if target.name == "kite.png":
            raise OSError(5, "simulated crash")
        return rename(self, target)

    monkeypatch.setattr(Path, "replace", die_on_data_rename)
    with pytest.raises(DependencyUnavailable):
        await files.put("outputs/kite.png", chunks(b"new picture!"), "image/webp")
    monkeypatch.undo()
    assert await files.stat("outputs/kite.png") == old
    folder = tmp_path / "files" / "objects" / "outputs"
    assert sorted(p.name for p in folder.iterdir()) == [".kite.png.meta", "kite.png"]
    assert await read(files, "outputs/kite.png") == b"old picture"
    assert await files.keys() == ["outputs/kite.png"]


async def test_data_whose_sidecar_is_lost_is_described_from_its_bytes(
    files: FilesystemImageStorage, tmp_path: Path
) -> None:
    put = await files.put("outputs/kite.png", chunks(b"png bytes"), "image/x-custom")
    (tmp_path / "files" / "objects" / "outputs" / ".kite.png.meta").unlink()
    stat = await files.stat("outputs/kite.png")
    assert (stat.size, stat.content_type) == (put.size, "image/png")
    assert stat.etag == hashlib.sha256(b"png bytes").hexdigest()[:32] != put.etag
    assert await files.exists("outputs/kite.png")
    await files.delete("outputs/kite.png")
    assert not await files.exists("outputs/kite.png")


@pytest.mark.parametrize("torn", [b"", b'[{"content_type": "image/x-cus'])
async def test_a_sidecar_torn_by_a_crash_is_read_as_lost(
    files: FilesystemImageStorage, tmp_path: Path, torn: bytes
) -> None:
    # Sidecars are not fsynced: after a crash one may be empty or cut short.
    put = await files.put("outputs/kite.png", chunks(b"png bytes"), "image/x-custom")
    (tmp_path / "files" / "objects" / "outputs" / ".kite.png.meta").write_bytes(torn)
    stat = await files.stat("outputs/kite.png")
    assert (stat.size, stat.content_type) == (put.size, "image/png")
    assert stat.etag == hashlib.sha256(b"png bytes").hexdigest()[:32] != put.etag
    assert await read(files, "outputs/kite.png") == b"png bytes"


async def test_a_sidecar_without_data_is_no_object(
    files: FilesystemImageStorage, tmp_path: Path
) -> None:
    await files.put("outputs/kite.png", chunks(b"png bytes"), "image/png")
    (tmp_path / "files" / "objects" / "outputs" / "kite.png").unlink()
    assert not await files.exists("outputs/kite.png")
    with pytest.raises(ObjectNotFound):
        await files.stat("outputs/kite.png")
    assert await files.sweep(older_than=-1) == 1


async def test_deleting_the_last_object_prunes_its_folders(
    files: FilesystemImageStorage, tmp_path: Path
) -> None:
    await files.put("originals/i1/d1", chunks(b"a"), "image/png")
    await files.put("originals/i2/d1", chunks(b"b"), "image/png")
    await files.delete("originals/i1/d1")
    objects = tmp_path / "files" / "objects"
    assert sorted(p.name for p in (objects / "originals").iterdir()) == ["i2"]
    await files.delete("originals/i2/d1")
    assert list(objects.iterdir()) == []


async def test_deleting_many_objects_prunes_the_folders_they_leave_empty(
    files: FilesystemImageStorage, tmp_path: Path
) -> None:
    gone = ["originals/i1/d1", "originals/i1/d2", "outputs/i1/d1.jpg", "outputs/i1/d2.jpg"]
    for key in [*gone, "originals/i2/d1"]:
        await files.put(key, chunks(key.encode()), "image/png")
    await files.delete_many(gone)
    objects = tmp_path / "files" / "objects"
    # Nothing of i1 is left, not even a sidecar; i2 keeps its object and its sidecar.
    assert sorted(p.relative_to(objects).as_posix() for p in objects.rglob("*")) == [
        "originals",
        "originals/i2",
        "originals/i2/.d1.meta",
        "originals/i2/d1",
    ]
    await files.delete_many(["originals/i2/d1"])
    assert list(objects.iterdir()) == []


async def test_deleting_many_objects_takes_one_trip_to_a_thread(
    files: FilesystemImageStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"outputs/i{n % 3}/d{n}.jpg" for n in range(12)]
    for key in keys:
        await files.put(key, chunks(b"jpeg"), "image/jpeg")
    trips: list[object] = []
    to_thread = asyncio.to_thread

    async def counted(call: Callable[..., object], *args: object) -> object:
        trips.append(call)
        return await to_thread(call, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    await files.delete_many(keys)
    monkeypatch.undo()
    assert len(trips) == 1
    assert await files.keys() == []


async def test_a_reader_keeps_its_version_while_a_put_replaces_it(
    files: FilesystemImageStorage,
) -> None:
    first = os.urandom(200_000)
    await files.put("k/live", chunks(first), "image/png")
    reader = files.get("k/live", chunk_size=10_000)
    head = await anext(reader)
    await files.put("k/live", chunks(b"replacement"), "image/png")
    rest = b"".join([chunk async for chunk in reader])
    assert head + rest == first
    assert await read(files, "k/live") == b"replacement"


async def test_concurrent_puts_of_one_key_leave_one_whole_described_object(
    files: FilesystemImageStorage,
) -> None:
    versions = [os.urandom(50_000 + n) for n in range(12)]
    puts = await asyncio.gather(
        *(files.put("k/race", chunks(v), f"image/v{n}") for n, v in enumerate(versions))
    )
    data = await read(files, "k/race")
    assert data in versions
    stat = await files.stat("k/race")
    assert stat == puts[versions.index(data)]
    assert stat.content_type == f"image/v{versions.index(data)}"
    assert await files.keys() == ["k/race"]


async def test_ping_fails_when_the_root_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(DependencyUnavailable):
        await FilesystemImageStorage(blocker / "root").ping()


async def test_a_put_cancelled_while_writing_leaves_no_file_behind(
    files: FilesystemImageStorage, threads: _Threads, tmp_path: Path
) -> None:
    stalled = asyncio.Event()

    async def big_then_stall() -> AsyncIterator[bytes]:
        for _ in range(4):  # more than one batch reaches the file before the stall
            yield os.urandom(512 * 1024)
        stalled.set()
        await asyncio.Event().wait()
        yield b""

    put = asyncio.create_task(files.put("originals/i1/d1", big_then_stall(), "image/png"))
    await stalled.wait()
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    await threads.ended()  # a thread still writing when the task was cancelled ends
    objects = tmp_path / "files" / "objects"
    assert [p for p in objects.rglob("*") if p.is_file()] == []
    assert not await files.exists("originals/i1/d1")
