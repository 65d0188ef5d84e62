"""API-side use cases against the in-memory ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.filesystem import FilesystemImageStorage
from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from adapters.sqlite.repository import SqliteInstructionRepository
from imagecore import services
from imagecore.errors import (
    ConflictError,
    DependencyUnavailable,
    FileTooLarge,
    InvalidParameter,
    NotFound,
    TooManyFiles,
    UnknownProduct,
    UnsupportedMediaType,
    ValidationError,
)
from imagecore.model import InstructionDetail, Status, paired_record_id
from imagecore.ports import InstructionQuery
from imagecore.products import find_product

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200


async def chunks(data: bytes, size: int = 50) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def new_resize(repo: MemoryInstructionRepository, user: str = "alice") -> str:
    view = await services.create_instruction(
        repo, user_id=user, product_ref="images/resize", params={"width": 100}, now=NOW
    )
    return view.instruction.id


async def upload(
    repo, storage, broker, instruction_id, data=JPEG, user="alice", name="kite.jpg", stream=None
):
    return await services.upload_file(
        repo,
        storage,
        broker,
        user_id=user,
        instruction_id=instruction_id,
        filename=name,
        chunks=stream or chunks(data),
        now=NOW,
    )


async def test_an_instruction_is_created_by_key_or_id(repo: MemoryInstructionRepository) -> None:
    by_key = await services.create_instruction(
        repo, user_id="alice", product_ref="images/thumbnail", params=None, now=NOW
    )
    by_id = await services.create_instruction(
        repo, user_id="alice", product_ref=find_product("images/thumbnail").id, params={}, now=NOW
    )
    assert by_key.instruction.product_id == by_id.instruction.product_id
    assert by_key.instruction.params == {"width": 256, "height": 256, "fit": "inside"}
    assert by_key.status is Status.PENDING
    assert by_key.counts["total"] == 0


async def test_bad_products_and_parameters_are_refused(repo: MemoryInstructionRepository) -> None:
    with pytest.raises(UnknownProduct):
        await services.create_instruction(repo, user_id="a", product_ref="x", params={}, now=NOW)
    with pytest.raises(InvalidParameter):
        await services.create_instruction(
            repo, user_id="a", product_ref="images/resize", params={"width": -1}, now=NOW
        )


async def test_an_upload_is_stored_recorded_and_queued(
    repo: MemoryInstructionRepository, storage: MemoryImageStorage, broker: MemoryMessageBroker
) -> None:
    instruction_id = await new_resize(repo)
    detail = await upload(repo, storage, broker, instruction_id)
    assert detail.status is Status.PENDING
    assert (detail.size, detail.mime_type, detail.original_name) == (
        len(JPEG),
        "image/jpeg",
        "kite.jpg",
    )
    assert await storage.exists(detail.original_key)
    delivery = await asyncio.wait_for(anext(broker.jobs()), 1)
    assert delivery.job.instruction_detail_id == detail.id
    assert await repo.get_detail(detail.id) == detail


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>" + b" " * 100, UnsupportedMediaType),
        (b"%PDF-1.4" + b"\x00" * 100, UnsupportedMediaType),
        (b"\xff\xd8", UnsupportedMediaType),
        (b"", ValidationError),
    ],
)
async def test_files_we_do_not_decode_leave_nothing_behind(
    repo, storage, broker, data: bytes, error: type[Exception]
) -> None:
    instruction_id = await new_resize(repo)
    with pytest.raises(error):
        await upload(repo, storage, broker, instruction_id, data=data)
    assert storage.stored_keys() == []
    assert await repo.count_details(instruction_id) == 0


async def test_a_file_over_the_limit_is_refused_while_streaming(repo, storage, broker) -> None:
    instruction_id = await new_resize(repo)
    limit = find_product("images/resize").limits.max_file_bytes
    produced = 0

    async def past_the_limit() -> AsyncIterator[bytes]:
        # Bounded, so that a broken limit fails this test instead of filling memory.
        nonlocal produced
        yield JPEG
        while produced <= limit + 4 * 1024 * 1024:
            produced += 1024 * 1024
            yield b"\x00" * (1024 * 1024)

    with pytest.raises(FileTooLarge, match=str(limit)):
        await services.upload_file(
            repo,
            storage,
            broker,
            user_id="alice",
            instruction_id=instruction_id,
            filename="big.jpg",
            chunks=past_the_limit(),
            now=NOW,
        )
    assert produced <= limit + 1024 * 1024
    assert storage.stored_keys() == []


async def test_an_instruction_holds_a_bounded_number_of_files(repo, storage, broker) -> None:
    instruction_id = await new_resize(repo)
    limit = find_product("images/resize").limits.max_files_per_instruction
    for _ in range(limit):
        await upload(repo, storage, broker, instruction_id)
    with pytest.raises(TooManyFiles):
        await upload(repo, storage, broker, instruction_id)


async def interleaved(data: bytes) -> AsyncIterator[bytes]:
    """The bytes in two chunks, letting other uploads run in between, as a network would."""
    for part in (data[:100], data[100:]):
        await asyncio.sleep(0)
        yield part


@pytest.fixture(params=["memory", "sqlite-and-files"])
async def stores(request, tmp_path: Path) -> AsyncIterator[tuple]:
    if request.param == "memory":
        yield MemoryInstructionRepository(), MemoryImageStorage()
        return
    repo = await SqliteInstructionRepository.open(tmp_path / "imagecore.sqlite3")
    yield repo, FilesystemImageStorage(tmp_path / "files")
    await repo.close()


async def test_concurrent_uploads_never_take_an_instruction_past_its_file_limit(
    stores, broker
) -> None:
    repo, storage = stores
    instruction_id = await new_resize(repo)
    limit = find_product("images/resize").limits.max_files_per_instruction

    async def one() -> str:
        try:
            await upload(repo, storage, broker, instruction_id, stream=interleaved(JPEG))
        except TooManyFiles:
            return "refused"
        return "stored"

    outcomes = await asyncio.gather(*(one() for _ in range(4 * limit)))
    assert outcomes.count("stored") == limit
    assert outcomes.count("refused") == 3 * limit
    stored = await repo.list_details(instruction_id)
    assert len(stored) == limit
    for detail in stored:
        assert await storage.exists(detail.original_key)
    if isinstance(storage, MemoryImageStorage):  # what was refused left no bytes behind
        assert len(storage.stored_keys()) == limit
    else:
        objects = [p for p in (storage.root / "objects").rglob("*") if not p.name.startswith(".")]
        assert len([p for p in objects if p.is_file()]) == limit
    view = await services.get_instruction(repo, user_id="alice", instruction_id=instruction_id)
    assert view.counts["total"] == limit


async def test_file_names_lose_their_paths(repo, storage, broker) -> None:
    instruction_id = await new_resize(repo)
    detail = await upload(repo, storage, broker, instruction_id, name="../../etc/pass\x00wd.jpg")
    assert detail.original_name == "passwd.jpg"
    unnamed = await upload(repo, storage, broker, instruction_id, name="..")
    assert unnamed.original_name == "upload.jpg"


async def test_another_users_objects_look_missing(repo, storage, broker) -> None:
    instruction_id = await new_resize(repo, user="alice")
    detail = await upload(repo, storage, broker, instruction_id)
    for call in (
        services.get_instruction(repo, user_id="mallory", instruction_id=instruction_id),
        services.list_details(repo, user_id="mallory", instruction_id=instruction_id),
        services.get_detail(
            repo, user_id="mallory", instruction_id=instruction_id, detail_id=detail.id
        ),
        services.get_instruction(repo, user_id="alice", instruction_id="not-an-id"),
        services.get_detail(
            repo, user_id="alice", instruction_id=instruction_id, detail_id="f" * 24
        ),
        upload(repo, storage, broker, instruction_id, user="mallory"),
    ):
        with pytest.raises(NotFound, match="not found"):
            await call


async def test_a_detail_is_only_found_under_its_own_instruction(repo, storage, broker) -> None:
    first, second = await new_resize(repo), await new_resize(repo)
    detail = await upload(repo, storage, broker, first)
    with pytest.raises(NotFound):
        await services.get_detail(repo, user_id="alice", instruction_id=second, detail_id=detail.id)


async def test_there_is_no_download_before_the_output_exists(repo, storage, broker) -> None:
    instruction_id = await new_resize(repo)
    detail = await upload(repo, storage, broker, instruction_id)
    output_id = paired_record_id(detail.id)
    for record_id, original in ((output_id, None), (detail.id, False)):
        with pytest.raises(NotFound, match="no output yet"):
            await services.open_download(
                repo,
                storage,
                user_id="alice",
                instruction_id=instruction_id,
                detail_id=record_id,
                original=original,
            )
    for record_id, original in ((detail.id, None), (output_id, True)):
        download = await services.open_download(
            repo,
            storage,
            user_id="alice",
            instruction_id=instruction_id,
            detail_id=record_id,
            original=original,
        )
        assert b"".join([c async for c in download.chunks]) == JPEG
        assert (download.name, download.content_type) == ("kite.jpg", "image/jpeg")


async def test_a_files_two_records_name_one_detail(repo, storage, broker) -> None:
    instruction_id = await new_resize(repo)
    detail = await upload(repo, storage, broker, instruction_id)
    found = [
        await services.get_record(
            repo, user_id="alice", instruction_id=instruction_id, record_id=record_id
        )
        for record_id in (detail.id, paired_record_id(detail.id))
    ]
    assert [(r.detail, r.is_output) for r in found] == [(detail, False), (detail, True)]
    assert [r.id for r in found] == [detail.id, paired_record_id(detail.id)]


async def test_instructions_list_with_their_status(repo, storage, broker) -> None:
    empty = await new_resize(repo)
    with_file = await new_resize(repo)
    await upload(repo, storage, broker, with_file)
    files_read: list[str] = []
    list_details = repo.list_details

    async def counted(instruction_id: str) -> list:
        files_read.append(instruction_id)
        return await list_details(instruction_id)

    repo.list_details = counted
    page = await services.list_instructions(repo, InstructionQuery(user_id="alice"))
    assert {v.instruction.id: v.counts["total"] for v in page.items} == {empty: 0, with_file: 1}
    assert {v.instruction.id: v.status for v in page.items} == {
        empty: Status.PENDING,
        with_file: Status.PENDING,
    }
    assert page.total == 2
    assert files_read == []  # a list reads the counts kept with each instruction


async def test_a_long_file_name_keeps_its_extension(repo, storage, broker) -> None:
    instruction_id = await new_resize(repo)
    detail = await upload(repo, storage, broker, instruction_id, name="a" * 1000 + ".jpeg")
    assert detail.original_name == "a" * 195 + ".jpeg"


class LostAnswerRepository(MemoryInstructionRepository):
    """``add_detail`` raises as a database whose answer was lost; ``landed`` says if it saved.

    ``readable`` false: reads fail too, as while the database is away.
    """

    def __init__(self, *, landed: bool, readable: bool = True, error: Exception) -> None:
        super().__init__()
        self.landed, self.readable, self.error = landed, readable, error

    async def add_detail(self, detail: InstructionDetail, *, max_files: int | None = None) -> None:
        if self.landed:
            await super().add_detail(detail, max_files=max_files)
        raise self.error

    async def get_detail(self, detail_id: str) -> InstructionDetail:
        if not self.readable:
            raise DependencyUnavailable("the database did not answer")
        return await super().get_detail(detail_id)


LOST = [DependencyUnavailable("the database did not answer"), ConflictError("the record exists")]


@pytest.mark.parametrize("error", LOST, ids=["unavailable", "conflict"])
async def test_an_upload_whose_record_landed_despite_an_error_is_kept_and_queued(
    storage: MemoryImageStorage, broker: MemoryMessageBroker, error: Exception
) -> None:
    repo = LostAnswerRepository(landed=True, error=error)
    instruction_id = await new_resize(repo)
    detail = await upload(repo, storage, broker, instruction_id)
    assert await repo.get_detail(detail.id) is not None
    assert await storage.exists(detail.original_key)
    assert await broker.queue_depth() == 1


@pytest.mark.parametrize("error", LOST, ids=["unavailable", "conflict"])
async def test_an_upload_whose_record_did_not_land_leaves_nothing(
    storage: MemoryImageStorage, broker: MemoryMessageBroker, error: Exception
) -> None:
    repo = LostAnswerRepository(landed=False, error=error)
    instruction_id = await new_resize(repo)
    with pytest.raises(type(error)):
        await upload(repo, storage, broker, instruction_id)
    assert await repo.list_details(instruction_id) == []
    assert storage.stored_keys() == []
    assert await broker.queue_depth() == 0


async def test_an_upload_of_unknown_outcome_keeps_its_original_and_says_so(
    storage: MemoryImageStorage, broker: MemoryMessageBroker
) -> None:
    repo = LostAnswerRepository(landed=True, readable=False, error=LOST[0])
    instruction_id = await new_resize(repo)
    with pytest.raises(DependencyUnavailable, match="did not confirm the upload"):
        await upload(repo, storage, broker, instruction_id)
    repo.readable = True
    [detail] = await repo.list_details(instruction_id)
    # The record that did land finds its original; the reaper queues it (its outbox is set).
    assert await storage.exists(detail.original_key)
    assert detail.outbox


async def test_deleting_a_jobs_files_cancels_the_waiting_ones_and_empties_storage(
    repo, storage, broker
) -> None:
    instruction_id = await new_resize(repo)
    waiting = await upload(repo, storage, broker, instruction_id)
    with pytest.raises(NotFound):
        await services.delete_files(
            repo, storage, broker, user_id="bob", instruction_id=instruction_id, now=NOW
        )
    assert storage.stored_keys() == [waiting.original_key]
    files = await services.delete_files(
        repo, storage, broker, user_id="alice", instruction_id=instruction_id, now=NOW
    )
    [cancelled] = files
    assert (cancelled.status, cancelled.error_code, cancelled.is_cleaned) == (
        Status.FAILED,
        services.CANCELLED,
        True,
    )
    assert storage.stored_keys() == []
    view = await services.get_instruction(repo, user_id="alice", instruction_id=instruction_id)
    assert view.instruction.id == instruction_id  # its history stays
