"""Shared fixtures of the unit tests: the in-memory ports (the corpus: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker


@pytest.fixture(scope="session", autouse=True)
def _imagecore_owns_libvips() -> None:
    """The test process runs the processor in threads: it gets the pool children's libvips.

    Without it pyvips' log handler would run Python on libvips' threads, and a
    garbage collection there can abort the process (see `configure_vips`).
    """
    from adapters.vips.guard import configure_vips  # noqa: PLC0415 - libvips loads with the fixture

    configure_vips()


@pytest.fixture
def repo() -> MemoryInstructionRepository:
    return MemoryInstructionRepository()


@pytest.fixture
def storage() -> MemoryImageStorage:
    return MemoryImageStorage()


@pytest.fixture
async def broker() -> AsyncIterator[MemoryMessageBroker]:
    broker = MemoryMessageBroker()
    yield broker
    broker.close()
