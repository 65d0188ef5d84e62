"""The pytest plugin of the kit: fixtures for the in-memory ports and the fake processor.

Installed with imagecore (the ``pytest11`` entry point ``imagecore``), so
every test session of a project that has imagecore and pytest loads it; the
fixtures are prefixed with ``imagecore_`` to leave a host's own names free.
Each is fresh for each test:

- ``imagecore_repository``: a `MemoryInstructionRepository`;
- ``imagecore_storage``: a `MemoryImageStorage`;
- ``imagecore_broker``: a `MemoryMessageBroker`, closed after the test;
- ``imagecore_processor``: a `FakeImageProcessor` (no libvips).

It also has pytest rewrite the asserts of `imagecore.testing.contracts`, so a
contract that fails says what it got.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from imagecore.testing.fakes import FakeImageProcessor

__all__ = [
    "imagecore_broker",
    "imagecore_processor",
    "imagecore_repository",
    "imagecore_storage",
]

pytest.register_assert_rewrite("imagecore.testing.contracts")


@pytest.fixture
def imagecore_repository() -> MemoryInstructionRepository:
    """An empty in-memory `InstructionRepository`."""
    return MemoryInstructionRepository()


@pytest.fixture
def imagecore_storage() -> MemoryImageStorage:
    """An empty in-memory `ImageStorage`."""
    return MemoryImageStorage()


# Synchronous, so that the plugin needs pytest only: it loads in every pytest session of
# an environment with imagecore, with or without pytest-asyncio.
@pytest.fixture
def imagecore_broker() -> Iterator[MemoryMessageBroker]:
    """An in-memory `MessageBroker` with nothing queued, closed after the test."""
    broker = MemoryMessageBroker()
    yield broker
    broker.close()


@pytest.fixture
def imagecore_processor() -> FakeImageProcessor:
    """A `FakeImageProcessor`: copies each file, raises what its ``errors`` list holds."""
    return FakeImageProcessor()
