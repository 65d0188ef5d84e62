"""The SQLite repository's write-ahead log: checkpointed off its connection, and bounded.

A checkpoint fsyncs the database, so it takes as long as the disk does; run
inside a commit, it held the event loop (a point write) or every call queued
on the repository's thread (a batch). These tests look at the log's file:
its length is the most it ever held, as SQLite reuses it from its start.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.sqlite import checkpoint as sqlite_checkpoint
from adapters.sqlite.repository import SqliteInstructionRepository
from imagecore.model import InstructionDetail
from imagecore.testing.contracts.factories import at, detail, instruction

PAGE = 4096


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "imagecore.sqlite3"


@pytest.fixture
async def repo(db_path: Path) -> AsyncIterator[SqliteInstructionRepository]:
    repo = await SqliteInstructionRepository.open(db_path)
    yield repo
    await repo.close()


def log_pages(db_path: Path) -> int:
    """The most pages the write-ahead log has held since it was made."""
    return db_path.with_name(db_path.name + "-wal").stat().st_size // PAGE


async def renewals(repo: SqliteInstructionRepository, count: int) -> InstructionDetail:
    """``count`` point writes, one lease renewal each, as a busy worker makes them."""
    job = instruction()
    await repo.add_instruction(job)
    file = detail(job)
    await repo.add_detail(file)
    current = file.claim("lease", at(1), at(61))
    assert await repo.update_detail(current)
    for n in range(count):
        current = current.renew(at(2 + n), at(62 + n))
        assert await repo.update_detail(current)
    return current


async def test_commits_leave_every_checkpoint_to_the_checkpointer(
    repo: SqliteInstructionRepository, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_checkpoint, "CHECKPOINT_ROWS", 10**9)  # it never runs
    await renewals(repo, 1500)
    # SQLite's own checkpoint, in a commit, would have started the log again
    # past 1,000 pages: it is off, and the log holds every write.
    assert log_pages(db_path) > 2000


async def test_the_log_stays_bounded_under_writes_that_never_pause(
    repo: SqliteInstructionRepository, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_checkpoint, "CHECKPOINT_ROWS", 50)
    monkeypatch.setattr(sqlite_checkpoint, "RESTART_FRAMES", 300)
    await renewals(repo, 3000)
    assert repo._checkpointer is not None
    await repo._checkpointer.idle()
    # Unchecked, 3,000 renewals fill about 8,000 pages; checkpoints that write
    # beside them cannot start the log again, the RESTART they ask for does.
    assert log_pages(db_path) < 4000


async def test_a_slow_checkpoint_holds_up_no_read_or_write(
    repo: SqliteInstructionRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_checkpoint, "CHECKPOINT_ROWS", 5)
    checkpointer = repo._checkpointer
    assert checkpointer is not None
    started, disk = threading.Event(), threading.Event()
    checkpoint = checkpointer._checkpoint

    def slow(*, restart: bool) -> None:
        started.set()
        disk.wait(60)  # a disk that takes its time over the fsyncs
        checkpoint(restart=restart)

    monkeypatch.setattr(checkpointer, "_checkpoint", slow)
    try:
        current = await renewals(repo, 5)
        assert await asyncio.to_thread(started.wait, 60)
        # While it lasts, reads and writes, on the loop and on the thread, go on.
        async with asyncio.timeout(30):
            assert await repo.get_detail(current.id) == current
            renewed = current.renew(at(100), at(160))
            assert await repo.update_detail(renewed)
            assert await repo.update_details([renewed.renew(at(101), at(161))]) == 1
            assert (await repo.get_detail(current.id)).version == renewed.version + 1
    finally:
        disk.set()
    await checkpointer.idle()
    assert checkpointer.checkpoints == 1
