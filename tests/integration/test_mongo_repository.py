"""The MongoDB repository on a real FerretDB (1.24, SQLite backend).

It passes the repository contract; the tests below cover what the contract
cannot see: data surviving a reconnect, a stopped server, writers on separate
clients (as separate processes would be) and the values FerretDB refuses to
store as they are.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest
from mongo_support import database_name, dropped_afterwards, fresh_repository

from adapters import mongo
from adapters.mongo import MongoInstructionRepository
from devtools import devstack
from imagecore.errors import DependencyUnavailable, TooManyFiles
from imagecore.model import InstructionDetail, OutputFile, Status, aggregate_status
from imagecore.ports import DetailQuery, InstructionQuery
from imagecore.testing.contracts.factories import at, detail, done, instruction
from imagecore.testing.contracts.repository import (
    InstructionRepositoryContract,
    check_everything_survives_reopening,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def mongo_uri(ferretdb_server: devstack.ServerHandle) -> str:
    return ferretdb_server.env["MONGO_URI"]


@pytest.fixture
async def mongo_repo(mongo_uri: str) -> AsyncIterator[MongoInstructionRepository]:
    async with fresh_repository(mongo_uri) as repo:
        yield repo


class TestMongoInstructionRepository(InstructionRepositoryContract):
    @pytest.fixture
    def repo(self, mongo_repo: MongoInstructionRepository) -> MongoInstructionRepository:
        return mongo_repo


async def test_everything_survives_closing_and_reopening_the_client(mongo_uri: str) -> None:
    async with dropped_afterwards(mongo_uri, database_name()) as database:
        await check_everything_survives_reopening(
            lambda: MongoInstructionRepository.open(mongo_uri, database)
        )


async def test_values_ferretdb_refuses_as_keys_or_nesting_read_back_equal(
    mongo_repo: MongoInstructionRepository,
) -> None:
    awkward = {"a.b": 1, "$set": {"": [[1, 2], [3.5, None]]}, "nul\x00key": "x\x00y", "é": -0.0}
    job = attrs.evolve(instruction(), params=awkward)
    await mongo_repo.add_instruction(job)
    file = detail(job)
    await mongo_repo.add_detail(file)
    claimed = file.claim("lease", at(1), at(61))
    assert await mongo_repo.update_detail(claimed)
    finished = attrs.evolve(done(file, 1), metadata={"exif": {"GPS.Lat": [[51, 1], [30, 1]]}})
    assert await mongo_repo.update_detail(finished)
    assert await mongo_repo.get_instruction(job.id) == job
    assert await mongo_repo.get_detail(file.id) == finished


async def test_concurrent_claims_from_separate_clients_have_exactly_one_winner(
    mongo_repo: MongoInstructionRepository, mongo_uri: str
) -> None:
    database = mongo_repo._instructions.database.name
    others = [await MongoInstructionRepository.open(mongo_uri, database) for _ in range(3)]
    repos = [mongo_repo, *others]
    try:
        job = instruction()
        await mongo_repo.add_instruction(job)
        for round_ in range(5):
            file = detail(job, round_)
            await mongo_repo.add_detail(file)
            claims = [file.claim(f"lease-{n}", at(1), at(61)) for n in range(24)]
            results = await asyncio.gather(
                *(repos[n % len(repos)].update_detail(claim) for n, claim in enumerate(claims))
            )
            assert sum(results) == 1
            assert await others[0].get_detail(file.id) == claims[results.index(True)]
    finally:
        for other in others:
            await other.close()


async def test_the_status_settles_on_the_files_statuses_under_racing_writers(
    mongo_repo: MongoInstructionRepository, mongo_uri: str
) -> None:
    database = mongo_repo._instructions.database.name
    others = [await MongoInstructionRepository.open(mongo_uri, database) for _ in range(3)]
    repos = [mongo_repo, *others]
    try:
        jobs = [instruction("carol", created=n) for n in range(6)]
        files = {job.id: [detail(job, n) for n in range(4)] for job in jobs}
        for job in jobs:
            await mongo_repo.add_instruction(job)
            for file in files[job.id]:
                await mongo_repo.add_detail(file)
        claimed = [f.claim("lease", at(10), at(70)) for fs in files.values() for f in fs]
        output = OutputFile("outputs/x.webp", "x.webp", 10, "image/webp")

        def final(n: int, file: InstructionDetail) -> InstructionDetail:
            if n % 8 == 3:  # some instructions keep one file running
                return file
            if n % 2:
                return file.complete(output, {}, at(11))
            return file.fail("corrupt_image", "truncated", at(12))

        # The files of one instruction change at once, each through its own client.
        finals = [final(n, c) for n, c in enumerate(claimed)]
        for batch in (claimed, [f for f in finals if f.status in {Status.DONE, Status.FAILED}]):
            results = await asyncio.gather(
                *(repos[n % len(repos)].update_detail(c) for n, c in enumerate(batch))
            )
            assert all(results)
        for job in jobs:
            mine = [f.status for f in finals if f.instruction_id == job.id]
            query = InstructionQuery("carol", status=aggregate_status(mine), size=20)
            assert job.id in [i.id for i in (await mongo_repo.list_instructions(query)).items]
    finally:
        for other in others:
            await other.close()


async def test_a_status_computed_from_a_stale_read_is_corrected_before_the_write_returns(
    mongo_repo: MongoInstructionRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = instruction()
    await mongo_repo.add_instruction(job)
    file = detail(job)
    await mongo_repo.add_detail(file)
    claimed = file.claim("lease", at(1), at(61))
    assert await mongo_repo.update_detail(claimed)
    # The first status computed is what a read taken before the claim would give,
    # as when another writer's file write lands between this read and its update.
    stale = iter([Status.PENDING])
    monkeypatch.setattr(
        mongo, "aggregate_status", lambda statuses: next(stale, None) or aggregate_status(statuses)
    )
    finished = claimed.complete(OutputFile("outputs/k.webp", "k.webp", 10, "image/webp"), {}, at(2))
    assert await mongo_repo.update_detail(finished)
    page = await mongo_repo.list_instructions(InstructionQuery("alice", status=Status.DONE))
    assert [i.id for i in page.items] == [job.id]


async def test_an_abandoned_version_lock_expires_and_a_fresh_one_makes_writers_lose(
    mongo_repo: MongoInstructionRepository,
) -> None:
    job = instruction()
    await mongo_repo.add_instruction(job)
    file = detail(job)
    await mongo_repo.add_detail(file)
    claim = file.claim("lease", at(1), at(61))
    key = f"{file.id}:{claim.version}"
    # A writer that took the lock and never came back (killed, or the server went away).
    await mongo_repo._locks.insert_one({"_id": "a" * 24, "key": key, "at": datetime.now(UTC)})
    assert not await mongo_repo.update_detail(claim)
    await mongo_repo._locks.update_one(
        {"_id": "a" * 24}, {"$set": {"at": datetime.now(UTC) - timedelta(minutes=5)}}
    )
    assert await mongo_repo.update_detail(claim)
    assert await mongo_repo.get_detail(file.id) == claim
    assert await mongo_repo._locks.count_documents({}) == 0


# --------------------------------------------------------------------------- a stopped server


async def within(seconds: float, call: Callable[[], Awaitable[object]]) -> float:
    """Await ``call()``, expecting `DependencyUnavailable`; return how long it took."""
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        await asyncio.wait_for(call(), seconds + 1)
    elapsed = time.monotonic() - started
    assert elapsed < seconds
    return elapsed


async def back_within(seconds: float, repo: MongoInstructionRepository) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            await repo.ping()
        except DependencyUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            return


# pymongo 4.20 leaks the socket its monitor was connecting with when ``open``
# closes a client that never reached the server (PYTHON-5867): collected here,
# where that one warning is expected, rather than in whichever test runs next.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
async def test_a_stopped_server_makes_calls_unavailable_fast_and_they_work_after_restart(
    tmp_path: Path,
) -> None:
    handle = devstack.start_ferretdb(tmp_path / "ferretdb")
    uri = handle.env["MONGO_URI"]
    try:
        repo = await MongoInstructionRepository.open(uri, "imagecore")
        job = instruction()
        file = detail(job)
        await repo.add_instruction(job)
        await repo.add_detail(file)

        devstack.kill(handle)
        claim = file.claim("lease", at(1), at(61))
        await within(2.0, repo.ping)
        await within(2.0, lambda: repo.get_instruction(job.id))
        await within(2.0, lambda: repo.update_detail(claim))
        await within(2.0, lambda: repo.add_instruction(instruction(created=1)))
        await within(2.0, lambda: repo.list_instructions(InstructionQuery("alice")))
        await within(2.0, lambda: MongoInstructionRepository.open(uri, "imagecore"))

        handle = devstack.restart(handle)
        await back_within(5.0, repo)
        assert await repo.get_instruction(job.id) == job
        assert await repo.update_detail(claim)
        assert (await repo.list_instructions(InstructionQuery("alice"))).total == 1
        await repo.close()
        with pytest.raises(DependencyUnavailable):
            await repo.ping()
    finally:
        devstack.stop(handle)
        gc.collect()


async def test_outbox_records_are_found_through_their_notes_never_by_scanning_files(
    mongo_repo: MongoInstructionRepository,
) -> None:
    job = instruction()
    await mongo_repo.add_instruction(job)
    recorded, published, finished = (detail(job, created=n) for n in range(3))
    recorded = attrs.evolve(recorded, outbox=True)
    for file in (recorded, published, finished):
        await mongo_repo.add_detail(file)
    finished_done = done(finished, 5)  # a final notification not yet sent
    assert await mongo_repo.update_detail(finished.claim("lease", at(5), at(65)))
    assert await mongo_repo.update_detail(finished_done)
    query = DetailQuery(outbox=True)
    found = await mongo_repo.find_details(query)
    assert [d.id for d in found] == [recorded.id, finished.id]
    # Announced: the note goes with the record.
    assert await mongo_repo.update_detail(finished_done.announced())
    assert [d.id for d in await mongo_repo.find_details(query)] == [recorded.id]
    # A note left by a crash after the record was cleared is dropped, not returned.
    await mongo_repo._outbox.insert_one({"_id": published.id, "updated_at": at(0), "version": 0})
    assert [d.id for d in await mongo_repo.find_details(query)] == [recorded.id]
    assert await mongo_repo._outbox.count_documents({}) == 1
    # A note newer than the detail the reaper reads (its write still on the way) stays.
    later = finished_done.announced()
    await mongo_repo._outbox.insert_one(
        {"_id": finished.id, "updated_at": at(6), "version": later.version + 1}
    )
    assert [d.id for d in await mongo_repo.find_details(query)] == [recorded.id]
    assert await mongo_repo._outbox.count_documents({"_id": finished.id}) == 1
    # The reaper reads the notes alone: without its note, a record is not found.
    await mongo_repo._outbox.delete_many({})
    assert await mongo_repo.find_details(query) == []


async def test_a_database_of_the_single_collection_layout_is_moved_to_days_on_opening(
    mongo_uri: str,
) -> None:
    async with dropped_afterwards(mongo_uri, database_name()) as database:
        repo = await MongoInstructionRepository.open(mongo_uri, database)
        job = instruction()
        # Files of two days; the last one's place is missing, as before places were kept.
        files = [attrs.evolve(detail(job, created=n * 86_400), outbox=n == 0) for n in range(3)]
        try:
            await repo.add_instruction(job)
            for file in files:
                await repo.add_detail(file)
            # As an older imagecore left them: one ``details`` and one ``file_places``
            # collection, no day copies of instructions, no notes or side entries, no marker.
            db = repo._db
            for name in await db.list_collection_names():
                if name.startswith("instructions_"):
                    await db[name].drop()
                if name.startswith(("details_", "file_places_")):
                    legacy = db[name.rpartition("_")[0]]
                    async for stored in db[name].find({}):
                        if stored["_id"] != f"{job.id}:2":
                            await legacy.insert_one(stored)
                    await db[name].drop()
            for collection in (repo._outbox, repo._in_flight, repo._kept, repo._migrations):
                await collection.delete_many({})
        finally:
            await repo.close()
        reopened = await MongoInstructionRepository.open(mongo_uri, database)
        try:
            found = await reopened.find_details(DetailQuery(outbox=True))
            assert [d.id for d in found] == [files[0].id]
            waiting = await reopened.find_details(DetailQuery(statuses=frozenset({Status.PENDING})))
            assert {d.id for d in waiting} == {f.id for f in files}
            assert [d.id for d in await reopened.list_details(job.id)] == [f.id for f in files]
            # The three files hold three places: a limit of four takes one more.
            await reopened.add_detail(detail(job, created=3), max_files=4)
            with pytest.raises(TooManyFiles):
                await reopened.add_detail(detail(job, created=4), max_files=4)
            names = set(await reopened._db.list_collection_names())
            assert not names & {"details", "file_places"}
            assert {"details_20261124", "details_20261125", "details_20261126"} <= names
            assert "instructions_20261124" in names
            assert await reopened.get_instruction(job.id) == job
        finally:
            await reopened.close()
