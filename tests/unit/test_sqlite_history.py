"""The SQLite repository's costs do not grow with history (issue 26).

A cost is counted in SQLite's virtual-machine steps (a progress handler
called at every one), not in time: the count of a query that reads a row
grows with every row it reads, whatever the machine's speed. Each test runs
the same work beside a small and a large history of finished files; what it
touches is the same, and so must its count be.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from adapters.documents import instruction_to_document
from adapters.memory import MemoryImageStorage, MemoryMessageBroker
from adapters.sqlite import repository as sqlite_adapter
from adapters.sqlite import schema as sqlite_schema
from adapters.sqlite.repository import SqliteInstructionRepository
from adapters.sqlite.schema import _MIGRATIONS, SCHEMA_VERSION
from imagecore import processing, recovery
from imagecore.model import Instruction, InstructionDetail, OutputFile, Status
from imagecore.ports import DetailQuery, InstructionQuery
from imagecore.testing.contracts.factories import at, detail, done, instruction

SETTINGS = processing.PipelineSettings(retention_seconds=3600, stale_after_seconds=7200)


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqliteInstructionRepository]:
    repo = await SqliteInstructionRepository.open(tmp_path / "imagecore.sqlite3")
    yield repo
    await repo.close()


async def steps(repo: SqliteInstructionRepository, work: Callable[[], Awaitable[object]]) -> int:
    """How many virtual-machine steps the repository's connection takes for ``work``."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0  # go on

    repo._connection.set_progress_handler(tick, 1)
    try:
        await work()
    finally:
        repo._connection.set_progress_handler(None, 1)
    return count


async def history(
    repo: SqliteInstructionRepository, files: int, *, cleaned: bool, at_second: float = -86_400
) -> None:
    """``files`` files finished at ``at_second``, in instructions of 50, as traffic leaves them."""
    for start in range(0, files, 50):
        job = instruction(created=at_second)
        await repo.add_instruction(job)
        for _ in range(min(50, files - start)):
            file = detail(job, created=at_second)
            await repo.add_detail(file)
            assert await repo.update_detail(file.claim("lease", at(at_second), at(at_second + 60)))
            finished = done(file, at_second)
            assert await repo.update_detail(finished)
            finished = finished.announced()  # its final notification went out
            assert await repo.update_detail(finished)
            if cleaned:
                assert await repo.update_detail(finished.mark_cleaned(at(at_second + 3600)))


async def in_flight(repo: SqliteInstructionRepository) -> list[InstructionDetail]:
    """The active set: two files running under live leases and one waiting, recently."""
    job = instruction(created=0)
    await repo.add_instruction(job)
    files = [detail(job, created=0, name=f"{n}.jpg") for n in range(3)]
    for file in files:
        await repo.add_detail(file)
    for file in files[:2]:
        assert await repo.update_detail(file.claim("lease", at(1), at(3600)))
    return files


async def test_a_reaper_pass_reads_none_of_the_finished_files(
    repo: SqliteInstructionRepository,
) -> None:
    broker = MemoryMessageBroker()
    await in_flight(repo)

    async def reap() -> None:
        assert await recovery.reap(repo, broker, now=at(60), settings=SETTINGS) == 0

    await history(repo, 100, cleaned=False)
    small = await steps(repo, reap)
    await history(repo, 2_000, cleaned=False)
    large = await steps(repo, reap)
    assert large <= small * 1.05, (small, large)


async def test_a_cleanup_pass_reads_only_the_files_due(repo: SqliteInstructionRepository) -> None:
    storage, broker = MemoryImageStorage(), MemoryMessageBroker()
    await in_flight(repo)

    async def cleanup() -> None:
        assert await recovery.cleanup(repo, storage, broker, now=at(60), settings=SETTINGS) == (
            0,
            0,
        )

    # Files cleaned long ago, and files finished within retention (not due yet).
    await history(repo, 100, cleaned=True)
    await history(repo, 100, cleaned=False, at_second=0)
    small = await steps(repo, cleanup)
    await history(repo, 2_000, cleaned=True)
    await history(repo, 2_000, cleaned=False, at_second=0)
    large = await steps(repo, cleanup)
    assert large <= small * 1.05, (small, large)


async def test_a_status_write_reads_none_of_the_instructions_other_files(
    repo: SqliteInstructionRepository,
) -> None:
    async def finish_one_beside(others: int) -> int:
        job = instruction()
        await repo.add_instruction(job)
        files = [detail(job, created=n) for n in range(others + 1)]
        for file in files:
            await repo.add_detail(file)
        assert await repo.update_detail(files[0].claim("lease", at(60), at(120)))
        return await steps(repo, lambda: repo.update_detail(done(files[0], 60)))

    # Both instructions stay PROCESSING: the same writes, beside 1 file or 49.
    beside_one, beside_many = await finish_one_beside(1), await finish_one_beside(49)
    assert beside_many == beside_one
    running = await repo.list_instructions(InstructionQuery("alice", status=Status.PROCESSING))
    assert running.total == 2


async def test_a_first_page_and_its_total_read_the_same_however_many_instructions(
    repo: SqliteInstructionRepository,
) -> None:
    async def more(count: int) -> None:
        for _ in range(count):
            await repo.add_instruction(instruction(created=-60))

    first = InstructionQuery("alice", size=10)
    waiting = InstructionQuery("alice", status=Status.PENDING, size=10)
    await more(50)
    small = [await steps(repo, lambda q=q: repo.list_instructions(q)) for q in (first, waiting)]
    await more(1_000)
    large = [await steps(repo, lambda q=q: repo.list_instructions(q)) for q in (first, waiting)]
    assert large == small
    assert (await repo.list_instructions(first)).total == 1_050
    assert (await repo.list_instructions(waiting)).total == 1_050


def instruction_document(job: Instruction) -> str:
    return sqlite_adapter._dumps(instruction_to_document(job))


def version_1_database(path: Path, files: int) -> None:
    """A version-1 database of ``files`` finished files, 50 to an instruction, as 85bd680 wrote."""
    with sqlite3.connect(path, isolation_level=None) as old:
        for statement in _MIGRATIONS[0]:
            old.execute(statement)
        old.execute("PRAGMA user_version=1")
        old.execute("BEGIN")
        for start in range(0, files, 50):
            job = instruction(created=start)
            old.execute(
                "INSERT INTO instructions VALUES (?, ?, ?, ?, ?)",
                (job.id, job.user_id, start, "DONE", instruction_document(job)),
            )
            for n in range(min(50, files - start)):
                row = sqlite_adapter._detail_row(done(detail(job, created=start + n), start))
                del row["outbox"]
                old.execute(
                    """INSERT INTO details (id, instruction_id, status, created_at, updated_at,
                                            is_cleaned, version, document)
                       VALUES (:id, :instruction_id, :status, :created_at, :updated_at,
                               :is_cleaned, :version, :document)""",
                    row,
                )
        old.execute("COMMIT")
    old.close()


def migration_steps(path: Path) -> int:
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    connection = sqlite3.connect(path, isolation_level=None)
    connection.set_progress_handler(tick, 1000)
    try:
        sqlite_schema._migrate(connection)
    finally:
        connection.close()
    return count


def test_the_migration_to_version_2_reads_each_file_a_bounded_number_of_times(
    tmp_path: Path,
) -> None:
    version_1_database(tmp_path / "small.sqlite3", 1_000)
    version_1_database(tmp_path / "large.sqlite3", 4_000)
    small = migration_steps(tmp_path / "small.sqlite3")
    large = migration_steps(tmp_path / "large.sqlite3")
    assert large < small * 6, (small, large)  # 4x the files: 4x the work, not 16x


async def test_a_version_1_database_is_brought_up_to_date_with_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "imagecore.sqlite3"
    job = instruction()
    waiting, running, finished = (detail(job, created=n) for n in range(3))
    running = running.claim("lease", at(5), at(65))
    finished = done(finished, 10)  # its final notification not sent yet: an outbox record
    assert finished.outbox
    with sqlite3.connect(path, isolation_level=None) as old:
        for statement in _MIGRATIONS[0]:
            old.execute(statement)
        old.execute("PRAGMA user_version=1")
        old.execute(
            "INSERT INTO instructions VALUES (?, ?, ?, ?, ?)",
            (
                job.id,
                job.user_id,
                sqlite_adapter._micros(job.created_at),
                Status.PROCESSING.value,
                sqlite_adapter._dumps(instruction_to_document(job)),
            ),
        )
        for file in (waiting, running, finished):
            row = sqlite_adapter._detail_row(file)
            del row["outbox"]  # a column of version 2
            old.execute(
                """INSERT INTO details (id, instruction_id, status, created_at, updated_at,
                                        is_cleaned, version, document)
                   VALUES (:id, :instruction_id, :status, :created_at, :updated_at,
                           :is_cleaned, :version, :document)""",
                row,
            )
    old.close()
    repo = await SqliteInstructionRepository.open(path)
    try:
        assert await repo.list_details(job.id) == [waiting, running, finished]
        recorded = await repo.find_details(DetailQuery(outbox=True))
        assert [d.id for d in recorded] == [finished.id]
        # The counts were taken from the files: finishing the rest makes it DONE.
        claimed = waiting.claim("lease", at(20), at(80))
        assert await repo.update_detail(claimed)
        for file in (claimed, running):
            output = OutputFile(f"outputs/{file.id}.webp", "kite.webp", 100, "image/webp")
            assert await repo.update_detail(file.complete(output, {}, at(30)))
        page = await repo.list_instructions(InstructionQuery("alice", status=Status.DONE))
        assert [i.id for i in page.items] == [job.id]
        assert page.total == 1  # the user's counts, taken from the instructions and moved since
        assert (await repo.list_instructions(InstructionQuery("alice"))).total == 1
    finally:
        await repo.close()
    with sqlite3.connect(path) as reopened:
        assert reopened.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    reopened.close()
