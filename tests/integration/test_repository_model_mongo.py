"""The MongoDB repository answers like the in-memory one (Hypothesis stateful), on FerretDB.

The machine is the one of ``tests/unit/test_repository_model.py``; only the
candidate differs: a repository on a fresh database of the session's FerretDB.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from mongo_support import fresh_repository

from devtools import devstack
from imagecore.ports import InstructionRepository
from unit.test_repository_model import AGREEMENT, RepositoryAgreement

pytestmark = pytest.mark.integration


class MongoAgreement(RepositoryAgreement):
    uri: str  # set by the test, from the session's FerretDB

    @contextlib.asynccontextmanager
    async def candidate(self) -> AsyncIterator[InstructionRepository]:
        async with fresh_repository(self.uri) as repo:
            yield repo


def test_mongo_agrees_with_memory(ferretdb_server: devstack.ServerHandle) -> None:
    class OnTheSessionServer(MongoAgreement):
        uri = ferretdb_server.env["MONGO_URI"]

    # Each example opens a fresh database and every call crosses the wire, with an
    # invariant listing everything after each step: fewer examples than the
    # in-process backends get keep this within a minute.
    run_state_machine_as_test(OnTheSessionServer, settings=settings(AGREEMENT, max_examples=20))
