"""In-memory adapters: storage, repository and broker in one process.

Production code, not test doubles: they back an embedder that wants no
database, the in-process broker of ``imagecore serve``, and fast tests. Each
passes the same contract suite as the real adapters. Nothing survives the
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path

import attrs

from adapters.local_files import copied, put_file
from imagecore.errors import ConflictError, NotFound, ObjectNotFound, TooManyFiles
from imagecore.model import Instruction, InstructionDetail, Status, aggregate_status
from imagecore.ports import (
    DetailQuery,
    InstructionQuery,
    JobMessage,
    Notification,
    Page,
    StoredObject,
)
from imagecore.products import Product
from imagecore.queries import detail_matches, instruction_matches

__all__ = ["MemoryImageStorage", "MemoryInstructionRepository", "MemoryMessageBroker"]


async def _slices(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class MemoryImageStorage:
    """Objects in a dict; a put is stored only once its stream has ended.

    ``scratch`` is the folder `local_copy` copies objects into (the system's
    temporary folder by default).
    """

    def __init__(self, scratch: Path | None = None) -> None:
        self._scratch = scratch or Path(tempfile.gettempdir())
        self._objects: dict[str, tuple[bytes, StoredObject]] = {}

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> StoredObject:
        buffer = bytearray()
        digest = hashlib.md5(usedforsecurity=False)
        async for chunk in chunks:
            buffer += chunk
            digest.update(chunk)
        stored = StoredObject(key, len(buffer), digest.hexdigest(), content_type)
        self._objects[key] = (bytes(buffer), stored)
        return stored

    async def stat(self, key: str) -> StoredObject:
        try:
            return self._objects[key][1]
        except KeyError:
            raise ObjectNotFound(f"no object {key!r}") from None

    async def get(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        _, chunks = await self.fetch(key, chunk_size)
        async for chunk in chunks:
            yield chunk

    async def fetch(
        self, key: str, chunk_size: int = 256 * 1024
    ) -> tuple[StoredObject, AsyncIterator[bytes]]:
        try:
            data, stored = self._objects[key]
        except KeyError:
            raise ObjectNotFound(f"no object {key!r}") from None
        return stored, _slices(data, chunk_size)

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        return copied(self.get, key, self._scratch)  # objects live in memory, not in files

    async def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        return await put_file(self.put, key, path, content_type)

    async def delete(self, key: str) -> None:
        self._objects.pop(key, None)

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._objects.pop(key, None)

    async def exists(self, key: str) -> bool:
        return key in self._objects

    async def ping(self) -> None:
        return None

    def stored_keys(self) -> list[str]:
        """Every stored key (for tests and embedders)."""
        return sorted(self._objects)


class MemoryInstructionRepository:
    """Products, instructions and details in dicts, with compare-and-set on details."""

    def __init__(self) -> None:
        self._products: dict[str, tuple[Product, datetime, datetime]] = {}
        self._instructions: dict[str, Instruction] = {}
        self._details: dict[str, InstructionDetail] = {}
        self._by_instruction: dict[str, list[str]] = {}

    async def save_products(self, products: Sequence[Product], now: datetime) -> None:
        for product in products:
            created = self._products.get(product.key, (product, now, now))[1]
            self._products[product.key] = (product, created, now)

    async def list_products(self) -> list[tuple[Product, datetime, datetime]]:
        return [self._products[k] for k in sorted(self._products)]

    async def add_instruction(self, instruction: Instruction) -> None:
        if instruction.id in self._instructions:
            raise ConflictError(f"instruction {instruction.id} exists")
        self._instructions[instruction.id] = instruction
        self._by_instruction[instruction.id] = []

    async def get_instruction(self, instruction_id: str) -> Instruction:
        try:
            return self._instructions[instruction_id]
        except KeyError:
            raise NotFound("instruction not found") from None

    async def list_instructions(self, query: InstructionQuery) -> Page[Instruction]:
        mine = [
            i
            for i in self._instructions.values()
            if instruction_matches(i, query, self._status_of(i.id))
        ]
        mine.sort(key=lambda i: (i.created_at, i.id), reverse=True)
        if query.after is not None:
            return Page(mine[: max(query.size, 0)], None, query.page, query.size)
        start = (query.page - 1) * query.size
        return Page(mine[start : start + query.size], len(mine), query.page, query.size)

    def _status_of(self, instruction_id: str) -> Status:
        return aggregate_status(
            [self._details[d].status for d in self._by_instruction[instruction_id]]
        )

    async def file_counts(self, instruction_ids: Sequence[str]) -> dict[str, dict[Status, int]]:
        counts = {}
        for instruction_id in instruction_ids:
            if instruction_id in self._instructions:
                held = [self._details[d].status for d in self._by_instruction[instruction_id]]
                counts[instruction_id] = {status: held.count(status) for status in Status}
        return counts

    async def add_detail(self, detail: InstructionDetail, *, max_files: int | None = None) -> None:
        # No await in here: the check and the insert are one step on the loop.
        if detail.id in self._details:
            raise ConflictError(f"detail {detail.id} exists")
        if detail.instruction_id not in self._instructions:
            raise NotFound("instruction not found")
        held = len(self._by_instruction[detail.instruction_id])
        if max_files is not None and held >= max_files:
            raise TooManyFiles(f"the instruction holds {max_files} files already")
        self._details[detail.id] = detail
        self._by_instruction[detail.instruction_id].append(detail.id)

    async def get_detail(self, detail_id: str) -> InstructionDetail:
        try:
            return self._details[detail_id]
        except KeyError:
            raise NotFound("file not found") from None

    async def list_details(self, instruction_id: str) -> list[InstructionDetail]:
        return [self._details[d] for d in self._by_instruction.get(instruction_id, [])]

    async def count_details(self, instruction_id: str) -> int:
        return len(self._by_instruction.get(instruction_id, []))

    async def update_detail(self, detail: InstructionDetail) -> bool:
        return self._compare_and_set(detail)

    async def update_details(self, details: Sequence[InstructionDetail]) -> int:
        # No await in here: the batch is one step on the loop.
        return sum(self._compare_and_set(detail) for detail in details)

    def _compare_and_set(self, detail: InstructionDetail) -> bool:
        stored = self._details.get(detail.id)
        if stored is None or stored.version != detail.version - 1:
            return False
        self._details[detail.id] = detail
        return True

    async def find_details(self, query: DetailQuery) -> list[InstructionDetail]:
        found = [d for d in self._details.values() if detail_matches(d, query)]
        found.sort(key=lambda d: (d.updated_at, d.id))
        return found[: query.limit]

    async def ping(self) -> None:
        return None


@attrs.define
class _MemoryDelivery:
    job: JobMessage
    delivery_count: int
    _broker: MemoryMessageBroker
    _settled: bool = False

    async def ack(self) -> None:
        self._settled = True

    async def nak(self, delay: float = 0.0) -> None:
        if self._settled:
            return
        self._settled = True
        self._broker.redeliver(self.job, self.delivery_count, delay)

    async def in_progress(self) -> None:
        return None


class _MemoryJobs:
    """A consumer's view of the queue; cancelling a wait loses no job (unlike a generator)."""

    def __init__(
        self, broker: MemoryMessageBroker, queue: asyncio.Queue[tuple[JobMessage, int]]
    ) -> None:
        self._broker = broker
        self._queue = queue

    def __aiter__(self) -> _MemoryJobs:
        return self

    async def __anext__(self) -> _MemoryDelivery:
        job, delivered = await self._queue.get()
        return _MemoryDelivery(job, delivered + 1, self._broker)


class MemoryMessageBroker:
    """The in-process broker: one job queue shared by every consumer, fan-out notifications.

    A second publish of a ``dedup_id`` seen among the last ``dedup_window``
    ids is dropped, like JetStream's duplicate window.
    """

    def __init__(self, dedup_window: int = 10_000, subscriber_buffer: int = 1_000) -> None:
        self._queue: asyncio.Queue[tuple[JobMessage, int]] = asyncio.Queue()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedup_window = dedup_window
        self._subscribers: set[asyncio.Queue[Notification]] = set()
        self._subscriber_buffer = subscriber_buffer
        self._delayed: set[asyncio.TimerHandle] = set()

    async def publish_job(self, job: JobMessage) -> None:
        if job.dedup_id in self._seen:
            return
        self._seen[job.dedup_id] = None
        if len(self._seen) > self._dedup_window:
            self._seen.popitem(last=False)
        self._queue.put_nowait((job, 0))

    def redeliver(self, job: JobMessage, delivered: int, delay: float) -> None:
        """Put a naked job back, after ``delay`` seconds."""
        if delay <= 0:
            self._queue.put_nowait((job, delivered))
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._delayed.discard(handle)
            self._queue.put_nowait((job, delivered))

        handle = loop.call_later(delay, fire)
        self._delayed.add(handle)

    def jobs(self) -> AsyncIterator[_MemoryDelivery]:
        return _MemoryJobs(self, self._queue)

    async def publish_notification(self, notification: Notification) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                # A subscriber that stopped reading loses its oldest event, not the broker.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(notification)

    @contextlib.asynccontextmanager
    async def notifications(self) -> AsyncIterator[AsyncIterator[Notification]]:
        queue: asyncio.Queue[Notification] = asyncio.Queue(self._subscriber_buffer)
        self._subscribers.add(queue)

        async def events() -> AsyncIterator[Notification]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            self._subscribers.discard(queue)

    async def queue_depth(self) -> int:
        return self._queue.qsize() + len(self._delayed)

    async def ping(self) -> None:
        return None

    def close(self) -> None:
        """Cancel delayed redeliveries."""
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
