"""Shared fixtures of the unit tests: the in-memory ports and a few images."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared image corpus is not beside the repository ({CORPUS})")
    return CORPUS


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
