"""A full disk or an absent backend is an outage the client is told of in our words.

Issue 27, finding 4: a full disk failed files for good and a 503 quoted
SQLite ("database or disk is full"). Adapters now raise `StorageFull` (a
`DependencyUnavailable`, so the file is retried without spending an attempt)
whose ``message`` names the dependency and whose ``detail`` keeps the
driver's words for the log.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import pyvips
from http_support import running_api

from adapters.sqlite.repository import SqliteInstructionRepository
from adapters.vips.guard import vips_errors
from adapters.vips.processor import VipsImageProcessor
from hostile.files import valid
from imagecore.errors import DependencyUnavailable, ImageCoreError, StorageFull
from imagecore.ports import ProcessingRequest
from imagecore.testing.contracts.factories import detail, instruction

#: Words of the OS or of a driver that must never reach a client.
DRIVER_WORDS = ("sqlite", "SQLITE", "Errno", "No space left", "database or disk")


@pytest.mark.parametrize(
    "error",
    [
        StorageFull("the database's disk is full", "sqlite: database or disk is full"),
        DependencyUnavailable("the database did not answer", "mongo: 127.0.0.1:1 refused"),
        DependencyUnavailable("the message broker is not connected"),
    ],
)
def test_an_outage_crosses_a_process_boundary_whole(error: DependencyUnavailable) -> None:
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert (copy.message, copy.detail, copy.code) == (error.message, error.detail, error.code)
    assert str(copy) == str(error)


def test_the_log_gets_the_detail_and_the_client_the_message() -> None:
    error = StorageFull("the file storage's disk is full", "[Errno 28] No space left on device")
    assert error.message == "the file storage's disk is full"
    assert "No space left" in str(error)
    assert isinstance(error, DependencyUnavailable)
    assert error.code == "storage_full"


async def test_a_full_database_is_storage_full_in_our_words(tmp_path: Path) -> None:
    repo = await SqliteInstructionRepository.open(tmp_path / "imagecore.sqlite3")
    try:
        # SQLite's own limit on the file's pages answers exactly as a full disk does.
        (pages,) = repo._connection.execute("PRAGMA page_count").fetchone()
        repo._connection.execute(f"PRAGMA max_page_count = {pages + 2}")
        parent = instruction()
        await repo.add_instruction(parent)

        async def fill() -> None:
            for n in range(2000):
                await repo.add_detail(detail(parent, created=n, name="x" * 500 + ".jpg"))

        with pytest.raises(StorageFull) as caught:
            await fill()
    finally:
        await repo.close()
    assert caught.value.message == "the database's disk is full"
    assert not any(word in caught.value.message for word in DRIVER_WORDS)
    assert "full" in caught.value.detail


def test_an_output_the_disk_has_no_room_for_is_storage_full(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    source.write_bytes(valid("png"))
    request = ProcessingRequest(
        product_key="images/convert",
        params={"format": "webp"},
        source=source,
        destination=Path("/dev/full"),  # every write answers ENOSPC
        max_pixels=10**6,
        max_frames=1,
    )
    with pytest.raises(StorageFull) as caught:
        VipsImageProcessor().process(request)
    assert caught.value.message == "no space left to write the output"
    assert not any(word in caught.value.message for word in DRIVER_WORDS)


async def test_an_error_of_no_known_kind_answers_500_without_its_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*_: object, **__: object) -> None:
        raise ImageCoreError("mongo refused the operation: secret driver words")

    async with running_api(tmp_path) as api:
        monkeypatch.setattr(api.repo, "list_instructions", refused)
        status, body = await api.call("GET", "/instructions")
    assert status == 500
    assert body["errors"][0]["code"] == "internal_error"
    assert "driver" not in body["message"]
    assert "request id" in body["message"]


def test_a_full_disk_inside_libvips_is_storage_full_not_the_images_fault() -> None:
    with pytest.raises(StorageFull) as caught, vips_errors():
        raise pyvips.Error(
            "unable to call VipsForeignSaveJpegFile", "vips__file_write: No space left on device"
        )
    assert not any(word in caught.value.message for word in DRIVER_WORDS)
