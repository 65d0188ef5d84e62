"""The Mongo repository's hot paths read by ``_id`` or the active set, never history (FerretDB).

FerretDB 1.24 on SQLite has no index it can use: a filter on anything but
``_id`` decodes the whole collection, and even an ``_id`` filter walks the
table until it meets the document. So the details and the places live in a
collection per day, and every hot path reads by ``_id`` in the day of the id,
or reads a side collection holding only the active set. Each test here seeds
finished history on earlier days, records every command the repository sends
(pymongo's command monitoring) while one path runs, and checks the filters
it sent and the collections it touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mongo_support import fresh_repository
from pymongo import monitoring

from adapters.mongo import MongoInstructionRepository, stored_documents
from devtools import devstack
from imagecore.errors import TooManyFiles
from imagecore.model import TERMINAL, Status
from imagecore.ports import DetailQuery
from imagecore.testing.contracts.factories import at, detail, done, instruction

pytestmark = pytest.mark.integration

#: Collections that grow with history (the prefixes of a day's collections, and the
#: instructions): a filter on them must be ``_id`` alone.
_HISTORY = ("details_", "file_places_", "instructions")


class _Recorder(monitoring.CommandListener):
    """Every command sent while ``recording`` is set, as (collection, filter) pairs."""

    def __init__(self) -> None:
        self.recording = False
        self.filters: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.recording:
            return
        command = event.command
        name = event.command_name
        if name in ("find", "count", "findAndModify", "aggregate", "distinct"):
            collection = command[name]
            query = command.get("filter", command.get("query", {}))
            if name == "aggregate":
                query = next((s["$match"] for s in command["pipeline"] if "$match" in s), {})
            self.filters.append((collection, dict(query)))
        elif name in ("update", "delete"):
            key = "updates" if name == "update" else "deletes"
            self.filters += [(command[name], dict(each["q"])) for each in command[key]]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:  # noqa: ARG002 - the listener's interface
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:  # noqa: ARG002 - the listener's interface
        return None


_HOUR = timedelta(hours=1)
#: History is this many seconds older than T0: two days before.
HISTORY_DAYS_AGO = 2 * 86_400
#: T0's day collections: all that the paths below may touch of the details and places.
TODAY = {"details_20261124", "file_places_20261124", "instructions_20261124"}

_RECORDER = _Recorder()
monitoring.register(_RECORDER)  # pymongo has no unregister: the recorder is idle outside `sent`


@contextlib.contextmanager
def sent() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    _RECORDER.filters = []
    _RECORDER.recording = True
    try:
        yield _RECORDER.filters
    finally:
        _RECORDER.recording = False


def walks(filters: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The filters on a history collection that are not ``{"_id": <one value>}``."""
    return [
        (collection, query)
        for collection, query in filters
        if collection.startswith(_HISTORY)
        and (set(query) != {"_id"} or isinstance(query["_id"], dict))
    ]


@pytest.fixture
async def repo(
    ferretdb_server: devstack.ServerHandle,
) -> AsyncIterator[MongoInstructionRepository]:
    async with fresh_repository(ferretdb_server.env["MONGO_URI"]) as repository:
        yield repository


async def seed_history(repo: MongoInstructionRepository, files: int) -> list[str]:
    """``files`` finished, announced and cleaned files in instructions of ten; their ids."""
    ids: list[str] = []
    for start in range(0, files, 10):
        job = instruction(created=start - HISTORY_DAYS_AGO)
        await repo.add_instruction(job)
        for number in range(start, min(start + 10, files)):
            new = detail(job, created=number - HISTORY_DAYS_AGO)
            await repo.add_detail(new, max_files=50)
            finished = done(new, number)
            assert await repo.update_detail(new.claim("l", at(number), at(number + 60)))
            assert await repo.update_detail(finished)
            announced = finished.announced()
            assert await repo.update_detail(announced)
            assert await repo.update_detail(announced.mark_cleaned(at(number + 2)))
            ids.append(new.id)
    return ids


def days_touched(filters: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """The day collections of details, places and instructions the commands went to."""
    return {c for c, _ in filters if c.startswith(("details_", "file_places_", "instructions_"))}


def read_by_id(filters: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """The ids of the details read or written by ``_id``."""
    return {query["_id"] for collection, query in filters if collection.startswith("details_")}


async def test_a_file_s_whole_life_reads_history_by_id_only(
    repo: MongoInstructionRepository,
) -> None:
    history = await seed_history(repo, 30)
    job = instruction(created=100)
    new = detail(job, created=100)
    with sent() as filters:
        await repo.add_instruction(job)
        await repo.add_detail(new, max_files=50)
        assert await repo.count_details(job.id) == 1
        claimed = new.claim("l", at(101), at(161))
        assert await repo.update_detail(claimed)
        renewed = claimed.renew(at(120), at(180))
        assert await repo.update_detail(renewed)
        stale = done(new, 130)
        assert not await repo.update_detail(stale)  # its version is taken: refused
        assert stale.output is not None
        finished = renewed.complete(stale.output, {}, at(131))
        assert await repo.update_detail(finished)
        assert await repo.update_detail(finished.announced())
        assert [d.id for d in await repo.list_details(job.id)] == [new.id]
        assert await repo.get_instruction(job.id) == job
        assert (await repo.file_counts([job.id]))[job.id][Status.DONE] == 1
    assert walks(filters) == []
    assert days_touched(filters) == TODAY
    assert read_by_id(filters) == {new.id}
    assert not read_by_id(filters) & set(history)


async def test_the_periodic_passes_read_only_the_active_set(
    repo: MongoInstructionRepository,
) -> None:
    history = await seed_history(repo, 30)
    job = instruction(created=200)
    await repo.add_instruction(job)
    waiting, running, finished = (detail(job, created=200 + n) for n in range(3))
    for new in (waiting, running, finished):
        await repo.add_detail(new, max_files=50)
    assert await repo.update_detail(running.claim("l", at(201), at(202)))
    assert await repo.update_detail(finished.claim("l", at(202), at(262)))
    assert await repo.update_detail(done(finished, 202))
    now = at(10_000)
    queries = [
        DetailQuery(statuses=frozenset({Status.PROCESSING})),
        DetailQuery(statuses=frozenset({Status.PENDING}) | TERMINAL, outbox=True),
        DetailQuery(statuses=frozenset({Status.PENDING}), outbox=False, updated_before=now),
        DetailQuery(statuses=TERMINAL, created_before=now, updated_before=now, is_cleaned=False),
        DetailQuery(statuses=frozenset({Status.PENDING, Status.PROCESSING}), created_before=now),
        DetailQuery(is_cleaned=False),
    ]
    with sent() as filters:
        found = [{d.id for d in await repo.find_details(query)} for query in queries]
    assert found == [
        {running.id},
        {finished.id},
        {waiting.id},
        {finished.id},
        {waiting.id, running.id},
        {waiting.id, running.id, finished.id},
    ]
    assert walks(filters) == []
    assert days_touched(filters) == {"details_20261124"}
    assert read_by_id(filters) == {waiting.id, running.id, finished.id}
    assert not read_by_id(filters) & set(history)


async def test_side_entries_a_crash_left_are_dropped_by_the_walk(
    repo: MongoInstructionRepository,
) -> None:
    job = instruction()
    await repo.add_instruction(job)
    first, second = detail(job, created=0), detail(job, created=1)
    for new in (first, second):
        await repo.add_detail(new, max_files=50)
    finished = done(first, 1)
    assert await repo.update_detail(first.claim("l", at(1), at(61)))
    assert await repo.update_detail(finished)
    # As a crash after the write and before the entry's removal would leave it.
    stale = {"created_at": at(0), "updated_at": at(0), "version": 2}
    await repo._in_flight.insert_one({"_id": first.id, **stale})
    # An entry written for a write still on the way (its version not stored yet) stays.
    ahead = {"created_at": at(1), "updated_at": at(1), "version": second.version + 1}
    await repo._kept.insert_one({"_id": second.id, **ahead})
    # Entries of inserts that never landed: one written long ago goes, a recent one stays.
    entry = {"created_at": at(0), "updated_at": at(0), "version": 1}
    await repo._in_flight.insert_one({"_id": "never", **entry, "at": datetime.now(UTC) - _HOUR})
    await repo._in_flight.insert_one({"_id": "coming", **entry, "at": datetime.now(UTC)})
    everything = await repo.find_details(DetailQuery(is_cleaned=False))
    assert {d.id for d in everything} == {first.id, second.id}
    assert {e["_id"] async for e in repo._in_flight.find({})} == {second.id, "coming"}
    assert {e["_id"] async for e in repo._kept.find({})} == {first.id, second.id}


async def test_stored_documents_read_back_as_if_the_repository_wrote_them(
    repo: MongoInstructionRepository,
) -> None:
    job = instruction()
    files = [detail(job, created=n) for n in range(4)]
    records = [
        done(files[0], 1),  # its final notification not sent yet
        done(files[1], 1).announced().mark_cleaned(at(5)),
        files[2].claim("l", at(2), at(62)),
        files[3],
    ]
    for name, documents in stored_documents(job, records, seq=1).items():
        await repo._db[name].insert_many(documents)
    assert await repo.get_instruction(job.id) == job
    assert await repo.list_details(job.id) == records
    assert await repo.count_details(job.id) == len(records)
    counts = {Status.PENDING: 1, Status.PROCESSING: 1, Status.DONE: 2, Status.FAILED: 0}
    assert await repo.file_counts([job.id]) == {job.id: counts}
    assert [d.id for d in await repo.find_details(DetailQuery(outbox=True))] == [files[0].id]
    kept = await repo.find_details(DetailQuery(is_cleaned=False))
    assert {d.id for d in kept} == {files[0].id, files[2].id, files[3].id}
    # The next upload takes the fifth place, and a sixth file is one too many.
    await repo.add_detail(detail(job, created=9), max_files=5)
    with pytest.raises(TooManyFiles):
        await repo.add_detail(detail(job, created=10), max_files=5)
