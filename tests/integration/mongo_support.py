"""Repositories on a fresh MongoDB database of a running FerretDB, dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from pymongo import AsyncMongoClient

from adapters.mongo import MongoInstructionRepository


def database_name(prefix: str = "test") -> str:
    """A database name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@contextlib.asynccontextmanager
async def dropped_afterwards(uri: str, database: str) -> AsyncIterator[str]:
    """Drop ``database`` on leaving, whatever the test did with it."""
    try:
        yield database
    finally:
        async with AsyncMongoClient[dict[str, object]](
            uri, serverSelectionTimeoutMS=5000
        ) as client:
            await client.drop_database(database)


@contextlib.asynccontextmanager
async def fresh_repository(uri: str) -> AsyncIterator[MongoInstructionRepository]:
    """An open repository on a new, empty database, closed and dropped on leaving."""
    async with dropped_afterwards(uri, database_name()) as database:
        repo = await MongoInstructionRepository.open(uri, database)
        try:
            yield repo
        finally:
            await repo.close()
