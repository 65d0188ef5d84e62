"""Worker-side use cases: processing, retries, reaping and cleanup, on the in-memory ports."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from adapters.filesystem import FilesystemImageStorage
from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from adapters.sqlite.repository import SqliteInstructionRepository
from entrypoints.config import Settings
from imagecore import processing, recovery, services
from imagecore.errors import (
    CorruptImage,
    DependencyUnavailable,
    ProcessingTimeout,
    ProcessorCrashed,
)
from imagecore.model import ImageInfo, InstructionDetail, OutputFile, Status, new_id
from imagecore.ports import DetailQuery, ProcessingRequest, ProcessingResult
from imagecore.worker import Worker

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
SETTINGS = processing.PipelineSettings(
    lease_seconds=60,
    max_attempts=3,
    republish_after_seconds=30,
    retention_seconds=3600,
    stale_after_seconds=7200,
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class CopyProcessor:
    """Stands in for libvips: copies the file, or raises what it is told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors: list[Exception] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, request: ProcessingRequest) -> ProcessingResult:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        shutil.copyfile(request.source, request.destination)
        size = request.destination.stat().st_size
        info = ImageInfo("jpeg", "image/jpeg", 64, 48)
        return ProcessingResult("jpeg", "image/jpeg", "jpg", size, 32, 24, info, {"quality": 80})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def processor() -> CopyProcessor:
    return CopyProcessor()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def uploaded(repo, storage, broker) -> InstructionDetail:
    view = await services.create_instruction(
        repo, user_id="alice", product_ref="images/resize", params={"width": 32}, now=T0
    )
    return await services.upload_file(
        repo,
        storage,
        broker,
        user_id="alice",
        instruction_id=view.instruction.id,
        filename="kite.jpg",
        chunks=chunks(JPEG),
        now=T0,
    )


async def run(repo, storage, broker, processor, clock, detail, tmp_path: Path):
    return (await handle(repo, storage, broker, processor, clock, detail, tmp_path)).outcome


async def handle(repo, storage, broker, processor, clock, detail, tmp_path: Path, **options):
    return await processing.process_detail(
        repo,
        storage,
        broker,
        processor,
        detail_id=detail.id,
        scratch=tmp_path,
        clock=clock,
        settings=SETTINGS,
        **options,
    )


def counted_instruction_reads(repo: MemoryInstructionRepository) -> list[str]:
    """The ids ``repo.get_instruction`` is called with from now on."""
    reads: list[str] = []
    get_instruction = repo.get_instruction

    async def counted(instruction_id: str):
        reads.append(instruction_id)
        return await get_instruction(instruction_id)

    repo.get_instruction = counted
    return reads


async def collect(events: AsyncIterator, count: int) -> list:
    return [await asyncio.wait_for(anext(events), 1) for _ in range(count)]


async def settled() -> None:
    """Let every task that can go on run until it waits for something.

    The in-memory ports never wait on a clock, a thread or a socket, so a
    bounded number of loop turns brings them to rest however slow the machine.
    """
    for _ in range(100):
        await asyncio.sleep(0)


async def test_a_file_is_processed_stored_and_announced(
    repo: MemoryInstructionRepository,
    storage: MemoryImageStorage,
    broker: MemoryMessageBroker,
    processor: CopyProcessor,
    clock: Clock,
    tmp_path: Path,
) -> None:
    detail = await uploaded(repo, storage, broker)
    async with broker.notifications() as events:
        outcome = await run(repo, storage, broker, processor, clock, detail, tmp_path)
        seen = await collect(events, 2)
    assert outcome is processing.Outcome.FINISHED
    done = await repo.get_detail(detail.id)
    assert done.status is Status.DONE
    assert done.output is not None
    assert (done.output.name, done.output.width, done.output.height) == ("kite.jpg", 32, 24)
    assert done.output.key == f"outputs/{detail.instruction_id}/{detail.id}.jpg"
    assert (done.width, done.height, done.metadata) == (64, 48, {"quality": 80})
    assert [n.status for n in seen] == [Status.PROCESSING, Status.DONE]
    assert seen[1].output_size == len(JPEG)
    assert list(tmp_path.iterdir()) == []


async def test_the_scratch_folders_are_made_when_missing(
    repo: MemoryInstructionRepository,
    broker: MemoryMessageBroker,
    processor: CopyProcessor,
    clock: Clock,
    tmp_path: Path,
) -> None:
    # An embedder calls process_detail with a folder of its choosing, not made yet.
    storage = MemoryImageStorage(tmp_path / "copies" / "not-yet")
    detail = await uploaded(repo, storage, broker)
    scratch = tmp_path / "scratch" / "not-yet"
    outcome = await run(repo, storage, broker, processor, clock, detail, scratch)
    assert outcome is processing.Outcome.FINISHED
    assert (await repo.get_detail(detail.id)).status is Status.DONE
    assert list(scratch.iterdir()) == []


async def test_a_finished_file_comes_back_as_it_was_written(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    handled = await handle(repo, storage, broker, processor, clock, detail, tmp_path)
    assert handled.outcome is processing.Outcome.FINISHED
    assert handled.final is not None
    stored = await repo.get_detail(detail.id)
    # The record was cleared after the final write, the rest is what the worker wrote.
    assert handled.final.announced() == stored
    again = await handle(repo, storage, broker, processor, clock, detail, tmp_path)
    assert again == processing.Handled(processing.Outcome.ACK, None)


async def test_a_filesystem_original_is_read_in_place_and_the_output_moved_in(
    repo, broker, clock, tmp_path: Path
) -> None:
    storage = FilesystemImageStorage(tmp_path / "files")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    detail = await uploaded(repo, storage, broker)
    sources: list[Path] = []
    written: list[int] = []

    async def processor(request: ProcessingRequest) -> ProcessingResult:
        sources.append(request.source)
        result = await CopyProcessor()(request)
        written.append(request.destination.stat().st_ino)
        return result

    outcome = await run(repo, storage, broker, processor, clock, detail, scratch)
    assert outcome is processing.Outcome.FINISHED
    async with storage.local_copy(detail.original_key) as original:
        assert sources == [original]
    assert sources[0].read_bytes() == JPEG  # still there: the worker removes only its copies
    done = await repo.get_detail(detail.id)
    assert done.output is not None
    async with storage.local_copy(done.output.key) as stored:
        pass
    assert stored.stat().st_ino == written[0]  # the processor's own file: a copy has another
    assert stored.read_bytes() == JPEG
    assert list(scratch.iterdir()) == []


async def test_a_worker_reads_an_instruction_once_for_its_files(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    first = await uploaded(repo, storage, broker)
    second = await services.upload_file(
        repo,
        storage,
        broker,
        user_id="alice",
        instruction_id=first.instruction_id,
        filename="kite2.jpg",
        chunks=chunks(JPEG),
        now=T0,
    )
    reads = counted_instruction_reads(repo)
    instructions = processing.Instructions(repo)
    for detail in (first, second):
        handled = await handle(
            repo, storage, broker, processor, clock, detail, tmp_path, instructions=instructions
        )
        assert handled.outcome is processing.Outcome.FINISHED
    assert reads == [first.instruction_id]


async def test_kept_instructions_are_the_latest_ones(repo, storage, broker) -> None:
    ids = [(await uploaded(repo, storage, broker)).instruction_id for _ in range(3)]
    reads = counted_instruction_reads(repo)
    instructions = processing.Instructions(repo, size=2)
    for instruction_id in [ids[0], ids[1], ids[0], ids[2], ids[0], ids[1]]:
        assert (await instructions.get(instruction_id)).id == instruction_id
    # ids[1] was the least recently used when ids[2] came in: it is read again.
    assert reads == [ids[0], ids[1], ids[2], ids[1]]


async def test_a_second_delivery_of_a_finished_file_does_nothing(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    await run(repo, storage, broker, processor, clock, detail, tmp_path)
    outcome = await run(repo, storage, broker, processor, clock, detail, tmp_path)
    assert outcome is processing.Outcome.ACK
    assert processor.calls == 1
    assert len([k for k in storage.stored_keys() if k.startswith("outputs/")]) == 1


async def test_two_workers_on_one_file_process_it_once(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    outcomes = await asyncio.gather(
        *(run(repo, storage, broker, processor, clock, detail, tmp_path) for _ in range(4))
    )
    assert sorted(o.value for o in outcomes) == ["ack", "ack", "ack", "finished"]
    assert processor.calls == 1
    assert (await repo.get_detail(detail.id)).status is Status.DONE


class RacedRepository(MemoryInstructionRepository):
    """Another worker claims a file between this worker's read of it and its claim."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    async def get_detail(self, detail_id: str) -> InstructionDetail:
        detail = await super().get_detail(detail_id)
        if not self.raced and detail.status is Status.PENDING:
            self.raced = True
            rival = detail.claim("rival-lease", T0, T0 + timedelta(seconds=60))
            assert await super().update_detail(rival)
        return detail  # the copy read before the rival's claim: still PENDING


async def test_a_claim_lost_to_another_worker_processes_and_announces_nothing(
    storage, broker, processor, clock, tmp_path
) -> None:
    repo = RacedRepository()
    detail = await uploaded(repo, storage, broker)
    async with broker.notifications() as events:
        outcome = await run(repo, storage, broker, processor, clock, detail, tmp_path)
        await broker.publish_notification(processing.notification_for(detail))  # a marker
        [first] = await collect(events, 1)
    assert outcome is processing.Outcome.ACK
    assert processor.calls == 0
    held = await repo.get_detail(detail.id)
    assert (held.status, held.lease_id, held.attempts) == (Status.PROCESSING, "rival-lease", 1)
    assert first.status is Status.PENDING  # the marker: this worker published nothing before it


async def test_a_corrupt_image_fails_at_once_with_its_reason(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    processor.errors.append(CorruptImage("the JPEG data ends early"))
    outcome = await run(repo, storage, broker, processor, clock, detail, tmp_path)
    failed = await repo.get_detail(detail.id)
    assert outcome is processing.Outcome.FINISHED
    assert (failed.status, failed.error_code, failed.attempts) == (
        Status.FAILED,
        "corrupt_image",
        1,
    )
    assert failed.error_message == "the JPEG data ends early"


async def test_a_dependency_outage_is_retried_without_spending_attempts(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    processor.errors.extend(DependencyUnavailable("storage is down") for _ in range(5))
    outcomes = []
    for _ in range(6):
        outcomes.append(await run(repo, storage, broker, processor, clock, detail, tmp_path))
        clock.advance(5)
    assert outcomes == [processing.Outcome.RETRY] * 5 + [processing.Outcome.FINISHED]
    done = await repo.get_detail(detail.id)
    assert (done.status, done.attempts) == (Status.DONE, 1)


async def test_a_crashing_or_slow_file_is_given_up_after_its_attempts(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    processor.errors.extend(
        [ProcessorCrashed("crashed"), ProcessingTimeout("too slow"), ProcessorCrashed("crashed")]
    )
    outcomes = []
    for _ in range(SETTINGS.max_attempts):
        outcomes.append(await run(repo, storage, broker, processor, clock, detail, tmp_path))
        clock.advance(5)
    assert outcomes == [
        processing.Outcome.RETRY,
        processing.Outcome.RETRY,
        processing.Outcome.FINISHED,
    ]
    failed = await repo.get_detail(detail.id)
    assert (failed.status, failed.error_code) == (Status.FAILED, "processor_crashed")
    assert failed.attempts == SETTINGS.max_attempts
    assert "gave up after 3 attempts: crashed" in (failed.error_message or "")


async def test_a_file_whose_job_is_deleted_while_it_runs_leaves_no_output(
    repo, storage, broker, processor: CopyProcessor, clock, tmp_path: Path
) -> None:
    detail = await uploaded(repo, storage, broker)

    async def deleted_meanwhile(request: ProcessingRequest) -> ProcessingResult:
        await services.delete_files(
            repo, storage, broker, user_id="alice", instruction_id=detail.instruction_id, now=T0
        )
        return await processor(request)

    await run(repo, storage, broker, deleted_meanwhile, clock, detail, tmp_path)
    assert (await repo.get_detail(detail.id)).status is Status.FAILED
    assert storage.stored_keys() == []  # neither the original nor the late output


async def test_a_worker_that_lost_its_lease_writes_nothing(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    processor.gate = asyncio.Event()
    slow = asyncio.create_task(run(repo, storage, broker, processor, clock, detail, tmp_path))
    await asyncio.sleep(0.05)
    clock.advance(SETTINGS.lease_seconds + 1)
    assert await recovery.reap(repo, broker, now=clock(), settings=SETTINGS) == 1
    reclaimed = await repo.get_detail(detail.id)
    assert (reclaimed.status, reclaimed.error_code) == (Status.PENDING, "worker_lost")
    processor.gate.set()
    await slow
    assert (await repo.get_detail(detail.id)).status is Status.PENDING


async def test_reaping_requeues_lost_work_and_fails_it_past_the_budget(
    repo, storage, broker, clock
) -> None:
    detail = await uploaded(repo, storage, broker)
    jobs = broker.jobs()
    await (await asyncio.wait_for(anext(jobs), 1)).ack()
    current = detail
    for attempt in range(1, SETTINGS.max_attempts + 1):
        claimed = current.claim("dead-worker", clock(), clock() + timedelta(seconds=60))
        assert await repo.update_detail(claimed)
        clock.advance(61)
        assert await recovery.reap(repo, broker, now=clock(), settings=SETTINGS) == 1
        current = await repo.get_detail(detail.id)
        if attempt < SETTINGS.max_attempts:
            assert current.status is Status.PENDING
            requeued = await asyncio.wait_for(anext(jobs), 1)
            assert requeued.job.dedup_id.startswith(f"{detail.id}:{attempt}:")
            await requeued.ack()
    assert current.status is Status.FAILED
    assert current.error_code == "worker_lost"


async def test_pending_files_the_broker_lost_are_published_again(
    repo, storage, broker, clock
) -> None:
    detail = await uploaded(repo, storage, broker)
    jobs = broker.jobs()
    await (await asyncio.wait_for(anext(jobs), 1)).ack()  # the broker "loses" it
    assert await recovery.reap(repo, broker, now=clock(), settings=SETTINGS) == 0
    clock.advance(SETTINGS.republish_after_seconds + 1)
    fresh = MemoryMessageBroker()  # a restarted broker has no memory of the first publish
    assert await recovery.reap(repo, fresh, now=clock(), settings=SETTINGS) == 1
    delivery = await asyncio.wait_for(anext(fresh.jobs()), 1)
    assert delivery.job.instruction_detail_id == detail.id


async def test_a_lost_job_sent_again_is_not_dropped_as_a_duplicate(
    repo, storage, broker, clock
) -> None:
    detail = await uploaded(repo, storage, broker)
    jobs = broker.jobs()
    first = await asyncio.wait_for(anext(jobs), 1)
    await first.ack()  # the broker "loses" it: nobody processed the file
    clock.advance(SETTINGS.republish_after_seconds + 1)
    # The same broker, whose duplicate window still holds the first publish's id.
    assert await recovery.reap(repo, broker, now=clock(), settings=SETTINGS) == 1
    again = await asyncio.wait_for(anext(jobs), 1)
    assert again.job.instruction_detail_id == detail.id
    assert again.job.dedup_id != first.job.dedup_id


async def test_cleanup_deletes_only_finished_files_past_retention(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    finished = await uploaded(repo, storage, broker)
    await run(repo, storage, broker, processor, clock, finished, tmp_path)
    waiting = await uploaded(repo, storage, broker)
    clock.advance(SETTINGS.retention_seconds + 1)
    cleaned, failed = await recovery.cleanup(repo, storage, broker, now=clock(), settings=SETTINGS)
    assert (cleaned, failed) == (1, 0)
    done = await repo.get_detail(finished.id)
    assert done.is_cleaned
    assert not await storage.exists(done.original_key)
    assert done.output is not None
    assert not await storage.exists(done.output.key)
    assert await storage.exists(waiting.original_key)
    again = await recovery.cleanup(repo, storage, broker, now=clock(), settings=SETTINGS)
    assert again == (0, 0)


async def test_cleanup_keeps_finished_files_younger_than_retention(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    finished = await uploaded(repo, storage, broker)
    await run(repo, storage, broker, processor, clock, finished, tmp_path)
    clock.advance(SETTINGS.retention_seconds - 1)
    assert await recovery.cleanup(repo, storage, broker, now=clock(), settings=SETTINGS) == (0, 0)
    kept = await repo.get_detail(finished.id)
    assert not kept.is_cleaned
    assert kept.output is not None
    assert await storage.exists(kept.original_key)
    assert await storage.exists(kept.output.key)


async def finished_files(repo, count: int) -> list[InstructionDetail]:
    """``count`` files processed at T0, recorded as a worker would leave them (no bytes stored)."""
    view = await services.create_instruction(
        repo, user_id="alice", product_ref="images/resize", params={"width": 32}, now=T0
    )
    files = []
    for _ in range(count):
        file_id = new_id(T0.timestamp())
        waiting = InstructionDetail(
            id=file_id,
            instruction_id=view.instruction.id,
            user_id="alice",
            product_key="images/resize",
            original_name="kite.jpg",
            original_key=f"originals/{view.instruction.id}/{file_id}",
            size=len(JPEG),
            mime_type="image/jpeg",
            created_at=T0,
            updated_at=T0,
        )
        await repo.add_detail(waiting)
        claimed = waiting.claim("lease", T0, T0 + timedelta(seconds=60))
        output = OutputFile(f"outputs/{file_id}.jpg", "kite.jpg", 100, "image/jpeg")
        done = claimed.complete(output, {}, T0, width=64, height=48)
        assert await repo.update_detail(claimed)
        assert await repo.update_detail(done)
        files.append(done)
    return files


@pytest.fixture(params=["memory", "sqlite"])
async def any_repo(request, tmp_path: Path) -> AsyncIterator:
    if request.param == "memory":
        yield MemoryInstructionRepository()
        return
    repo = await SqliteInstructionRepository.open(tmp_path / "imagecore.sqlite3")
    yield repo
    await repo.close()


async def test_cleanup_drains_a_backlog_larger_than_a_batch_in_one_run(
    any_repo, storage, broker, clock
) -> None:
    backlog = SETTINGS.cleanup_batch * 10
    files = await finished_files(any_repo, backlog)
    for file in files[:3]:
        await storage.put(file.original_key, chunks(JPEG), "image/jpeg")
    clock.advance(SETTINGS.retention_seconds + 1)
    cleaned = await recovery.cleanup(any_repo, storage, broker, now=clock(), settings=SETTINGS)
    assert cleaned == (backlog, 0)
    assert storage.stored_keys() == []
    left = DetailQuery(is_cleaned=False, limit=backlog)
    assert await any_repo.find_details(left) == []


class CountedStorage(MemoryImageStorage):
    """Counts the calls that delete objects."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        await super().delete(key)

    async def delete_many(self, keys) -> None:
        self.calls["delete_many"] += 1
        await super().delete_many(keys)


class CountedRepository(MemoryInstructionRepository):
    """Counts the calls that write details."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def update_detail(self, detail: InstructionDetail) -> bool:
        self.calls["update_detail"] += 1
        return await super().update_detail(detail)

    async def update_details(self, details) -> int:
        self.calls["update_details"] += 1
        return await super().update_details(details)


async def test_cleanup_deletes_and_marks_a_batch_of_files_per_call(broker, clock) -> None:
    repo, storage = CountedRepository(), CountedStorage()
    settings = attrs.evolve(SETTINGS, cleanup_batch=4)
    files = await finished_files(repo, 9)
    for file in files:
        await storage.put(file.original_key, chunks(JPEG), "image/jpeg")
        await storage.put(file.output.key, chunks(JPEG), "image/jpeg")
    repo.calls.clear()
    clock.advance(SETTINGS.retention_seconds + 1)
    assert await recovery.cleanup(repo, storage, broker, now=clock(), settings=settings) == (9, 0)
    assert storage.stored_keys() == []
    # Batches of 4, 4 and 1: a call of each kind per batch, never one per file.
    assert storage.calls == Counter(delete_many=3)
    assert repo.calls == Counter(update_details=3)


class DownStorage(MemoryImageStorage):
    """A storage whose deletes fail, as during an outage; it notes the keys it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.tried: list[str] = []

    async def delete_many(self, keys) -> None:
        self.tried += keys
        raise DependencyUnavailable("the disk is away")


async def test_cleanup_marks_no_file_whose_bytes_it_could_not_delete(broker, clock) -> None:
    repo, storage = MemoryInstructionRepository(), DownStorage()
    files = await finished_files(repo, 3)
    clock.advance(SETTINGS.retention_seconds + 1)
    with pytest.raises(DependencyUnavailable):
        await recovery.cleanup(repo, storage, broker, now=clock(), settings=SETTINGS)
    assert sorted(storage.tried) == sorted(
        key for file in files for key in (file.original_key, file.output.key)
    )
    assert [(await repo.get_detail(file.id)).is_cleaned for file in files] == [False] * 3


async def test_cleanup_fails_files_stuck_for_too_long(repo, storage, broker, clock) -> None:
    stuck = await uploaded(repo, storage, broker)
    clock.advance(SETTINGS.stale_after_seconds + 1)
    assert await recovery.cleanup(repo, storage, broker, now=clock(), settings=SETTINGS) == (0, 1)
    failed = await repo.get_detail(stuck.id)
    assert (failed.status, failed.error_code) == (Status.FAILED, "stale")
    assert await storage.exists(failed.original_key)


async def test_an_unexpected_error_costs_an_attempt_and_strands_nothing(
    repo, storage, broker, processor, clock, tmp_path
) -> None:
    detail = await uploaded(repo, storage, broker)
    processor.errors.append(KeyError("a bug"))
    outcome = await run(repo, storage, broker, processor, clock, detail, tmp_path)
    retried = await repo.get_detail(detail.id)
    assert outcome is processing.Outcome.RETRY
    assert (retried.status, retried.attempts, retried.error_code) == (
        Status.PENDING,
        1,
        "internal_error",
    )
    assert (
        await run(repo, storage, broker, processor, clock, detail, tmp_path)
        is processing.Outcome.FINISHED
    )
    assert (await repo.get_detail(detail.id)).status is Status.DONE


class DownBroker(MemoryMessageBroker):
    """A broker whose publishes fail, as during an outage; it notes the ids it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.tried: list[str] = []

    async def publish_job(self, job) -> None:
        self.tried.append(job.dedup_id)
        raise DependencyUnavailable("the broker is down")


async def test_a_failed_publish_stays_in_the_outbox_until_the_reaper_sends_it(
    repo, storage, clock
) -> None:
    down = DownBroker()
    detail = await uploaded(repo, storage, down)
    recorded = await repo.get_detail(detail.id)
    assert recorded.outbox
    assert await recovery.reap(repo, down, now=clock(), settings=SETTINGS) == 0
    clock.advance(SETTINGS.outbox_grace_seconds + 1)
    assert await recovery.reap(repo, down, now=clock(), settings=SETTINGS) == 1
    assert (await repo.get_detail(detail.id)).outbox  # still down: the record stays
    up = MemoryMessageBroker()
    assert await recovery.reap(repo, up, now=clock(), settings=SETTINGS) == 1
    delivery = await asyncio.wait_for(anext(up.jobs()), 1)
    assert delivery.job.instruction_detail_id == detail.id
    # Every publish of this one record carries one id: a broker that got an
    # earlier one after all would drop this.
    assert set(down.tried) == {delivery.job.dedup_id}
    assert len(down.tried) == 2
    assert not (await repo.get_detail(detail.id)).outbox
    assert await recovery.reap(repo, up, now=clock(), settings=SETTINGS) == 0


async def test_a_published_upload_clears_its_outbox_record(repo, storage, broker) -> None:
    detail = await uploaded(repo, storage, broker)
    assert not detail.outbox
    assert not (await repo.get_detail(detail.id)).outbox


class OneSlotRunner(CopyProcessor):
    """Stands in for the process pool with a single slot: one file processed at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.slot = asyncio.Semaphore(1)

    async def __call__(self, request: ProcessingRequest) -> ProcessingResult:
        async with self.slot:
            return await super().__call__(request)


async def test_a_worker_claims_one_file_ahead_of_its_pool_and_no_more(
    repo, storage, broker, tmp_path: Path
) -> None:
    runner = OneSlotRunner()
    runner.gate = asyncio.Event()
    details = [await uploaded(repo, storage, broker) for _ in range(3)]
    worker = Worker(
        repo,
        storage,
        broker,
        runner,
        settings=SETTINGS,
        concurrency=Settings(worker_concurrency=1, worker_prefetch=1).jobs_in_hand,
        scratch=tmp_path,
    )
    await worker.start(sole_worker=True)
    try:

        async def statuses() -> list[Status]:
            return [(await repo.get_detail(d.id)).status for d in details]

        await settled()  # every job the worker may take is taken and claimed by now
        assert sorted(s.value for s in await statuses()) == ["PENDING", "PROCESSING", "PROCESSING"]
        assert runner.calls == 1  # the file ahead waits for the slot, already fetched
        runner.gate.set()
        for _ in range(3000):
            if await statuses() == [Status.DONE] * 3:
                break
            await asyncio.sleep(0.01)
        assert await statuses() == [Status.DONE] * 3
    finally:
        await worker.stop(grace_seconds=1)


async def test_cleanup_on_the_way_out_lands_however_often_the_task_is_cancelled() -> None:
    landed: list[str] = []
    started = asyncio.Event()

    async def release() -> None:
        await asyncio.sleep(0.2)
        landed.append("released")

    async def job() -> None:
        try:
            started.set()
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await processing.to_the_end(release())
            raise

    task = asyncio.create_task(job())
    await started.wait()
    for _ in range(5):  # a stopping worker asks again and again
        task.cancel()
        await asyncio.sleep(0.02)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert landed == ["released"]
