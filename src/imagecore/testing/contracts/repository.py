"""The `InstructionRepository` contract: subclass with a ``repo`` fixture to run it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import attrs
import pytest

from imagecore.errors import ConflictError, NotFound, TooManyFiles
from imagecore.model import Instruction, InstructionDetail, Status
from imagecore.ports import DetailQuery, InstructionQuery, InstructionRepository
from imagecore.products import CATALOGUE
from imagecore.testing.contracts.factories import at, detail, done, instruction


class InstructionRepositoryContract:
    """Behaviour every repository adapter must show."""

    # Async tests under pytest-asyncio's strict mode too (the default of a new project).
    pytestmark = pytest.mark.asyncio

    async def test_products_are_stored_once_and_keep_their_creation_time(
        self, repo: InstructionRepository
    ) -> None:
        await repo.save_products(CATALOGUE, at(0))
        await repo.save_products(CATALOGUE, at(100))
        stored = await repo.list_products()
        assert [p.key for p, _, _ in stored] == sorted(p.key for p in CATALOGUE)
        assert all(created == at(0) and updated == at(100) for _, created, updated in stored)
        resize = next(p for p, _, _ in stored if p.key == "images/resize")
        assert resize == next(p for p in CATALOGUE if p.key == "images/resize")

    async def test_an_instruction_reads_back_equal(self, repo: InstructionRepository) -> None:
        job = instruction()
        await repo.add_instruction(job)
        assert await repo.get_instruction(job.id) == job

    async def test_a_missing_instruction_is_not_found(self, repo: InstructionRepository) -> None:
        with pytest.raises(NotFound):
            await repo.get_instruction("0123456789abcdef01234567")

    async def test_an_instruction_id_cannot_be_reused(self, repo: InstructionRepository) -> None:
        job = instruction()
        await repo.add_instruction(job)
        with pytest.raises(ConflictError):
            await repo.add_instruction(job)

    async def test_instructions_list_newest_first_one_user_only(
        self, repo: InstructionRepository
    ) -> None:
        mine = [instruction("alice", created=i) for i in range(5)]
        for job in [*mine, instruction("bob", created=2.5)]:
            await repo.add_instruction(job)
        page = await repo.list_instructions(InstructionQuery(user_id="alice", page=1, size=2))
        assert [i.id for i in page.items] == [mine[4].id, mine[3].id]
        assert page.total == 5
        last = await repo.list_instructions(InstructionQuery(user_id="alice", page=3, size=2))
        assert [i.id for i in last.items] == [mine[0].id]

    async def test_instructions_page_by_cursor_through_equal_times(
        self, repo: InstructionRepository
    ) -> None:
        # Three created in the same millisecond: the id orders them.
        mine = [instruction("alice", created=i // 3) for i in range(7)]
        for job in [*mine, instruction("bob", created=1)]:
            await repo.add_instruction(job)
        newest_first = sorted(mine, key=lambda i: (i.created_at, i.id), reverse=True)
        seen: list[Instruction] = []
        after = None
        for _ in range(10):
            page = await repo.list_instructions(InstructionQuery("alice", size=3, after=after))
            seen += page.items
            if len(page.items) < 3:
                break
            assert page.total is None or after is None
            after = (page.items[-1].created_at, page.items[-1].id)
        assert [i.id for i in seen] == [i.id for i in newest_first]
        cut = await repo.list_instructions(
            InstructionQuery(
                "alice", size=10, after=(newest_first[1].created_at, newest_first[1].id)
            )
        )
        assert [i.id for i in cut.items] == [i.id for i in newest_first[2:]]
        assert cut.total is None  # not counted: a page after a cursor costs one page

    async def test_instructions_filter_by_creation_time(self, repo: InstructionRepository) -> None:
        jobs = [instruction("alice", created=i * 10) for i in range(4)]
        for job in jobs:
            await repo.add_instruction(job)
        query = InstructionQuery(user_id="alice", created_from=at(10), created_to=at(20))
        page = await repo.list_instructions(query)
        assert {i.id for i in page.items} == {jobs[1].id, jobs[2].id}
        assert page.total == 2

    async def test_instructions_filter_by_aggregate_status(
        self, repo: InstructionRepository
    ) -> None:
        empty, finished = instruction(created=1), instruction(created=2)
        await repo.add_instruction(empty)
        await repo.add_instruction(finished)
        file = detail(finished)
        await repo.add_detail(file)
        claimed = file.claim("lease", at(3), at(63))
        assert await repo.update_detail(claimed)
        assert await repo.update_detail(claimed.fail("corrupt_image", "truncated", at(4)))
        failed = await repo.list_instructions(InstructionQuery("alice", status=Status.FAILED))
        pending = await repo.list_instructions(InstructionQuery("alice", status=Status.PENDING))
        assert [i.id for i in failed.items] == [finished.id]
        assert [i.id for i in pending.items] == [empty.id]

    async def test_file_counts_follow_each_files_status(self, repo: InstructionRepository) -> None:
        job, empty = instruction(created=1), instruction(created=2)
        await repo.add_instruction(job)
        await repo.add_instruction(empty)
        files = [detail(job, created=n) for n in range(3)]
        for file in files:
            await repo.add_detail(file)
        claimed = files[0].claim("lease", at(3), at(63))
        assert await repo.update_detail(claimed)
        assert await repo.update_detail(claimed.fail("corrupt_image", "truncated", at(4)))
        assert await repo.update_detail(files[1].claim("lease", at(5), at(65)))
        counts = await repo.file_counts([job.id, empty.id, "0123456789abcdef01234567"])
        assert counts == {
            job.id: {Status.PENDING: 1, Status.PROCESSING: 1, Status.DONE: 0, Status.FAILED: 1},
            empty.id: dict.fromkeys(Status, 0),
        }
        assert await repo.file_counts([]) == {}

    async def test_details_read_back_equal_in_upload_order(
        self, repo: InstructionRepository
    ) -> None:
        job = instruction()
        await repo.add_instruction(job)
        files = [detail(job, created=i, name=f"photo-{i}.jpg") for i in range(3)]
        for f in files:
            await repo.add_detail(f)
        assert await repo.list_details(job.id) == files
        assert await repo.count_details(job.id) == 3
        assert await repo.get_detail(files[1].id) == files[1]

    async def test_a_finished_detail_keeps_its_output_and_metadata(
        self, repo: InstructionRepository
    ) -> None:
        job = instruction()
        await repo.add_instruction(job)
        file = detail(job)
        await repo.add_detail(file)
        claimed = file.claim("lease-1", at(1), at(61))
        assert await repo.update_detail(claimed)
        finished = done(file, 1)
        assert await repo.update_detail(finished)
        assert await repo.get_detail(file.id) == finished

    async def test_a_missing_detail_is_not_found(self, repo: InstructionRepository) -> None:
        with pytest.raises(NotFound):
            await repo.get_detail("0123456789abcdef01234567")

    async def test_a_detail_id_cannot_be_reused(self, repo: InstructionRepository) -> None:
        job = instruction()
        await repo.add_instruction(job)
        file = detail(job)
        await repo.add_detail(file)
        with pytest.raises(ConflictError):
            await repo.add_detail(file)

    async def test_concurrent_details_never_take_an_instruction_past_its_limit(
        self, repo: InstructionRepository
    ) -> None:
        job = instruction()
        await repo.add_instruction(job)
        files = [detail(job, created=n / 1000) for n in range(12)]
        outcomes = await asyncio.gather(
            *(repo.add_detail(f, max_files=5) for f in files), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(refused) == 7
        assert all(isinstance(o, TooManyFiles) for o in refused), refused
        assert await repo.count_details(job.id) == 5
        stored = {d.id for d in await repo.list_details(job.id)}
        assert stored == {f.id for f, o in zip(files, outcomes, strict=True) if o is None}
        # Without a limit an instruction takes any number (the service always gives one).
        await repo.add_detail(detail(job, created=1), max_files=None)
        assert await repo.count_details(job.id) == 6

    async def test_a_stale_version_is_not_written(self, repo: InstructionRepository) -> None:
        job = instruction()
        await repo.add_instruction(job)
        file = detail(job)
        await repo.add_detail(file)
        first = file.claim("lease-a", at(1), at(61))
        second = file.claim("lease-b", at(1), at(61))
        assert await repo.update_detail(first)
        assert not await repo.update_detail(second)
        assert (await repo.get_detail(file.id)).lease_id == "lease-a"

    async def test_only_one_of_many_concurrent_claims_wins(
        self, repo: InstructionRepository
    ) -> None:
        job = instruction()
        await repo.add_instruction(job)
        file = detail(job)
        await repo.add_detail(file)
        claims = [file.claim(f"lease-{n}", at(1), at(61)) for n in range(8)]
        results = await asyncio.gather(*(repo.update_detail(c) for c in claims))
        assert sum(results) == 1
        winner = claims[results.index(True)]
        assert await repo.get_detail(file.id) == winner

    async def test_updating_an_unknown_detail_writes_nothing(
        self, repo: InstructionRepository
    ) -> None:
        job = instruction()
        await repo.add_instruction(job)
        ghost = detail(job).claim("lease", at(1), at(61))
        assert not await repo.update_detail(ghost)
        assert await repo.count_details(job.id) == 0

    async def test_a_batch_writes_each_current_version_and_not_a_stale_one(
        self, repo: InstructionRepository
    ) -> None:
        job = instruction()
        await repo.add_instruction(job)
        files = [detail(job, created=n, name=f"{n}.jpg") for n in range(3)]
        for file in files:
            await repo.add_detail(file)
        # Another writer took the second file first; the fourth was never added.
        assert await repo.update_detail(files[1].claim("lease-b", at(1), at(61)))
        ghost = detail(job, created=9)
        batch = [file.claim("lease-a", at(2), at(62)) for file in [*files, ghost]]
        assert await repo.update_details(batch) == 2
        stored = [await repo.get_detail(file.id) for file in files]
        assert [d.lease_id for d in stored] == ["lease-a", "lease-b", "lease-a"]
        assert (stored[0], stored[2]) == (batch[0], batch[2])
        with pytest.raises(NotFound):
            await repo.get_detail(ghost.id)
        # The batch moved the instruction's counts and status as single writes do.
        counts = (await repo.file_counts([job.id]))[job.id]
        assert (counts[Status.PENDING], counts[Status.PROCESSING]) == (0, 3)
        running = await repo.list_instructions(InstructionQuery("alice", status=Status.PROCESSING))
        assert [i.id for i in running.items] == [job.id]
        assert await repo.update_details([]) == 0

    async def test_find_details_filters_by_status_time_and_cleaning(
        self, repo: InstructionRepository
    ) -> None:
        job = instruction()
        await repo.add_instruction(job)
        waiting, running, old_done = detail(job, 0), detail(job, 1), detail(job, 2)
        for f in (waiting, running, old_done):
            await repo.add_detail(f)
        assert await repo.update_detail(running.claim("l", at(5), at(65)))
        assert await repo.update_detail(old_done.claim("l", at(3), at(63)))
        finished = done(old_done, 3)
        assert await repo.update_detail(finished)

        def ids(found: list[InstructionDetail]) -> list[str]:
            return [d.id for d in found]

        processing = await repo.find_details(DetailQuery(statuses=frozenset({Status.PROCESSING})))
        assert ids(processing) == [running.id]
        before = await repo.find_details(DetailQuery(updated_before=at(4.5)))
        assert ids(before) == [waiting.id, old_done.id]
        created = await repo.find_details(DetailQuery(created_before=at(1)))
        assert ids(created) == [waiting.id]
        assert await repo.update_detail(finished.mark_cleaned(at(10)))
        uncleaned = await repo.find_details(DetailQuery(is_cleaned=False))
        cleaned = await repo.find_details(DetailQuery(is_cleaned=True))
        assert set(ids(uncleaned)) == {waiting.id, running.id}
        assert ids(cleaned) == [old_done.id]
        limited = await repo.find_details(DetailQuery(limit=2))
        assert len(limited) == 2

    async def test_find_details_filters_by_outbox_record(self, repo: InstructionRepository) -> None:
        job = instruction()
        await repo.add_instruction(job)
        recorded, sent = attrs.evolve(detail(job, 0), outbox=True), detail(job, 1)
        await repo.add_detail(recorded)
        await repo.add_detail(sent)
        waiting = frozenset({Status.PENDING})
        unsent = await repo.find_details(DetailQuery(statuses=waiting, outbox=True))
        assert [d.id for d in unsent] == [recorded.id]
        assert await repo.update_detail(recorded.published(at(5)))
        assert await repo.find_details(DetailQuery(statuses=waiting, outbox=True)) == []
        cleared = await repo.find_details(DetailQuery(statuses=waiting, outbox=False))
        assert {d.id for d in cleared} == {recorded.id, sent.id}

    async def test_ping_answers(self, repo: InstructionRepository) -> None:
        await repo.ping()


class ClosingRepository(InstructionRepository, Protocol):
    """A repository over a store that outlives it (a file, a server), closed when done."""

    async def close(self) -> None:
        """Release the store; a repository opened on it afterwards sees every write."""
        ...


async def check_everything_survives_reopening(
    open_repo: Callable[[], Awaitable[ClosingRepository]],
) -> None:
    """Write through one repository, close it, and read it all back through a new one.

    ``open_repo`` opens the same store each time (a database file, a database name).
    """
    repo = await open_repo()
    job = instruction("alice", created=1)
    waiting, finished = detail(job, 2, "kite.jpg"), detail(job, 3, "lake.png")
    await repo.save_products(CATALOGUE, at(0))
    await repo.add_instruction(job)
    await repo.add_detail(waiting)
    await repo.add_detail(finished)
    assert await repo.update_detail(finished.claim("lease", at(4), at(64)))
    final = done(finished, 4)
    assert await repo.update_detail(final)
    await repo.close()

    reopened = await open_repo()
    try:
        assert await reopened.get_instruction(job.id) == job
        assert await reopened.list_details(job.id) == [waiting, final]
        assert [(p, c) for p, c, _ in await reopened.list_products()] == [
            (p, at(0)) for p in sorted(CATALOGUE, key=lambda p: p.key)
        ]
        processing = InstructionQuery("alice", status=Status.PROCESSING)
        assert (await reopened.list_instructions(processing)).items == [job]
    finally:
        await reopened.close()
