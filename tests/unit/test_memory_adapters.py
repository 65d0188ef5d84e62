"""The contract suites, run against the in-memory adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from contracts.broker import MessageBrokerContract
from contracts.repository import InstructionRepositoryContract
from contracts.storage import ImageStorageContract


class TestMemoryImageStorage(ImageStorageContract):
    @pytest.fixture
    def storage(self) -> MemoryImageStorage:
        return MemoryImageStorage()


class TestMemoryInstructionRepository(InstructionRepositoryContract):
    @pytest.fixture
    def repo(self) -> MemoryInstructionRepository:
        return MemoryInstructionRepository()


class TestMemoryMessageBroker(MessageBrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[MemoryMessageBroker]:
        broker = MemoryMessageBroker()
        yield broker
        broker.close()
