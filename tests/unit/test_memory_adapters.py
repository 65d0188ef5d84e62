"""The contract suites of the test kit, run against the in-memory adapters its plugin hands out."""

from __future__ import annotations

import pytest

from adapters.memory import MemoryImageStorage, MemoryInstructionRepository, MemoryMessageBroker
from imagecore.testing.contracts import (
    ImageStorageContract,
    InstructionRepositoryContract,
    MessageBrokerContract,
)


class TestMemoryImageStorage(ImageStorageContract):
    @pytest.fixture
    def storage(self, imagecore_storage: MemoryImageStorage) -> MemoryImageStorage:
        return imagecore_storage


class TestMemoryInstructionRepository(InstructionRepositoryContract):
    @pytest.fixture
    def repo(
        self, imagecore_repository: MemoryInstructionRepository
    ) -> MemoryInstructionRepository:
        return imagecore_repository


class TestMemoryMessageBroker(MessageBrokerContract):
    @pytest.fixture
    def broker(self, imagecore_broker: MemoryMessageBroker) -> MemoryMessageBroker:
        return imagecore_broker
