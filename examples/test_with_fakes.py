"""Test your own code on imagecore's fakes: `pytest test_with_fakes.py` (no libvips at work)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from imagecore import Status, processing, services
from imagecore.testing import FakeImageProcessor, strategies

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PHOTO = b"\xff\xd8\xff\xe0" + bytes(1000)  # a JPEG as far as anyone sniffing it can tell
SETTINGS = processing.PipelineSettings(
    lease_seconds=60,
    max_attempts=3,
    republish_after_seconds=30,
    retention_seconds=3600,
    stale_after_seconds=7200,
)


async def make_thumbnail(repo, storage, broker, run, params: dict, scratch: Path) -> Status:
    """The code under test: a host's own use of imagecore's use cases."""
    job = await services.create_instruction(
        repo, user_id="alice", product_ref="images/thumbnail", params=params, now=NOW
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield PHOTO

    detail = await services.upload_file(
        repo,
        storage,
        broker,
        user_id="alice",
        instruction_id=job.instruction.id,
        filename="photo.jpg",
        chunks=chunks(),
        now=NOW,
    )
    await processing.process_detail(
        repo,
        storage,
        broker,
        run,
        detail_id=detail.id,
        scratch=scratch,
        clock=lambda: NOW + timedelta(seconds=1),
        settings=SETTINGS,
    )
    return (await repo.get_detail(detail.id)).status


@pytest.mark.asyncio  # pytest-asyncio's strict mode, a new project's default
async def test_a_thumbnail_is_done(
    imagecore_repository, imagecore_storage, imagecore_broker, imagecore_processor, tmp_path
) -> None:
    status = await make_thumbnail(
        imagecore_repository,
        imagecore_storage,
        imagecore_broker,
        imagecore_processor,
        {"width": 64},
        tmp_path,
    )
    assert status is Status.DONE
    assert imagecore_processor.calls == 1


@settings(max_examples=25, deadline=None)
@given(params=strategies.params("images/thumbnail"))
def test_every_valid_thumbnail_request_is_done(params: dict, tmp_path_factory) -> None:
    broker = MemoryMessageBroker()
    try:
        status = asyncio.run(
            make_thumbnail(
                MemoryInstructionRepository(),
                MemoryImageStorage(),
                broker,
                FakeImageProcessor(),
                params,
                tmp_path_factory.mktemp("scratch"),
            )
        )
    finally:
        broker.close()
    assert status is Status.DONE
