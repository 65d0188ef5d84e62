"""Shared fixtures of the unit tests: the in-memory ports (the corpus: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker


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
