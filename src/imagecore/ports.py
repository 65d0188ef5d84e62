"""The ports: what the domain needs from the outside world, as Protocols.

I/O ports are ``async``; the processor is synchronous and CPU-bound (the
worker runs it in a process pool). Every adapter of a port passes the one
contract suite of `imagecore.testing.contracts`. Adapters raise only `imagecore.errors`
exceptions; a driver's error never crosses a port.

Why one module: the ports are the core's whole contract with the outside,
read side by side; each is short.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import attrs

from imagecore.model import ImageInfo, Instruction, InstructionDetail, Status
from imagecore.products import Product

_T = TypeVar("_T")

__all__ = [
    "Delivery",
    "DetailQuery",
    "ImageProcessor",
    "ImageStorage",
    "InstructionQuery",
    "InstructionRepository",
    "JobMessage",
    "MessageBroker",
    "Notification",
    "Page",
    "ProcessingRequest",
    "ProcessingResult",
    "RunProcessor",
    "StorageUsage",
    "StoredObject",
    "Webhooks",
]


# --------------------------------------------------------------------------- storage


@attrs.frozen
class StoredObject:
    """What storage knows about one object."""

    key: str
    size: int
    etag: str
    content_type: str


class ImageStorage(Protocol):
    """Blobs by key: originals and outputs. Streamed both ways, never whole in memory."""

    async def put(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> StoredObject:
        """Store the chunks under ``key``, replacing any object there (idempotent).

        The object appears whole or not at all: a reader never sees a partial
        write, and an exception from ``chunks`` (a size limit, a dropped
        upload) is re-raised after leaving nothing behind.
        Raises `DependencyUnavailable` when the backend does not answer.
        """
        ...

    async def stat(self, key: str) -> StoredObject:
        """Describe the object; raise `ObjectNotFound` if there is none."""
        ...

    def get(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """Stream the object's bytes; raise `ObjectNotFound` (on first iteration) if absent."""
        ...

    async def fetch(
        self, key: str, chunk_size: int = 256 * 1024
    ) -> tuple[StoredObject, AsyncIterator[bytes]]:
        """Describe the object and start streaming it, in one request to the backend.

        The description is of the very bytes streamed, even if the object is
        replaced meanwhile (`stat` then `get` may see two versions). Raises
        `ObjectNotFound` here, not on the first iteration, if there is none.
        """
        ...

    def local_copy(self, key: str) -> AbstractAsyncContextManager[Path]:
        """The object as a file on this host, to read for as long as the context lasts.

        A backend that keeps objects as files gives the object's own file (not
        to be written, and only while nothing deletes or replaces the object:
        the original of a file a worker holds); any other copies the object
        into a scratch folder of its own and removes the copy on exit. Raises
        `ObjectNotFound` if there is no such object, `StorageFull` or
        `DependencyUnavailable` if the copy cannot be written.
        """
        ...

    async def put_file(self, key: str, path: Path, content_type: str) -> StoredObject:
        """Store the finished file at ``path`` as the object ``key``, as `put` would its bytes.

        ``path`` is gone afterwards, stored or not; nothing may write to it any
        more. A backend that keeps objects as files on the same filesystem
        moves it in without copying.
        """
        ...

    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error (idempotent)."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Delete every object named, in as few calls to the backend as it allows (idempotent).

        A missing object is not an error. Raises `DependencyUnavailable` when
        the backend does not answer, with any number of the objects deleted:
        call it again.
        """
        ...

    async def ping(self) -> None:
        """Raise `DependencyUnavailable` unless the backend answers."""
        ...


@runtime_checkable
class StorageUsage(Protocol):
    """What a storage that can tell cheaply how much it holds offers beside `ImageStorage`."""

    async def total_bytes(self) -> int:
        """The bytes of every object stored, as the backend counts them."""
        ...


# --------------------------------------------------------------------------- repository


@attrs.frozen
class Page(Generic[_T]):
    """One page of a list, newest first; ``total`` is None when it was not counted."""

    items: Sequence[_T]
    total: int | None
    page: int
    size: int


@attrs.frozen
class InstructionQuery:
    """Filters of ``GET /instructions``; ``status`` is the aggregate status.

    ``after`` (the ``created_at`` and ``id`` of the last instruction seen)
    asks for the page that follows it, in place of ``page``: the repository
    then seeks straight to it, however deep, and does not count the total.
    """

    user_id: str
    status: Status | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    page: int = 1
    size: int = 10
    after: tuple[datetime, str] | None = None


@attrs.frozen(kw_only=True)
class DetailQuery:
    """Filters for the worker's reaper and for cleanup."""

    statuses: frozenset[Status] = frozenset()
    updated_before: datetime | None = None
    created_before: datetime | None = None
    is_cleaned: bool | None = None
    outbox: bool | None = None
    limit: int = 500


class InstructionRepository(Protocol):
    """The system of record for products, instructions and their files.

    Details are written with compare-and-set on ``version``: `update_detail`
    succeeds only if the stored version is ``detail.version - 1``, which is
    how two workers can never both claim one file.
    """

    async def save_products(self, products: Sequence[Product], now: datetime) -> None:
        """Store the catalogue, keeping each product's first ``created_at`` (idempotent)."""
        ...

    async def list_products(self) -> list[tuple[Product, datetime, datetime]]:
        """Every stored product with its created and updated times, by key."""
        ...

    async def add_instruction(self, instruction: Instruction) -> None:
        """Insert a new instruction; raise `ConflictError` if the id exists."""
        ...

    async def get_instruction(self, instruction_id: str) -> Instruction:
        """Return the instruction; raise `NotFound` if there is none."""
        ...

    async def list_instructions(self, query: InstructionQuery) -> Page[Instruction]:
        """One page of a user's instructions, newest first, filtered."""
        ...

    async def file_counts(self, instruction_ids: Sequence[str]) -> dict[str, dict[Status, int]]:
        """How many files each instruction holds in each status (every status a key).

        Kept with the instruction, so a list of instructions reads none of
        their files. An id with no instruction is left out.
        """
        ...

    async def add_detail(self, detail: InstructionDetail, *, max_files: int | None = None) -> None:
        """Insert a new detail; raise `ConflictError` if the id exists.

        With ``max_files``, raise `TooManyFiles` instead when the instruction
        holds that many files already; the check and the insert are one step,
        so concurrent inserts never take an instruction past it.
        Raise `NotFound` if the instruction does not exist.
        """
        ...

    async def get_detail(self, detail_id: str) -> InstructionDetail:
        """Return the detail; raise `NotFound` if there is none."""
        ...

    async def list_details(self, instruction_id: str) -> list[InstructionDetail]:
        """The details of one instruction in upload order."""
        ...

    async def count_details(self, instruction_id: str) -> int:
        """How many files the instruction holds."""
        ...

    async def update_detail(self, detail: InstructionDetail) -> bool:
        """Write ``detail`` if the stored version is ``detail.version - 1``.

        Returns False (and writes nothing) when another writer got there first
        or the detail is gone. Raises `DependencyUnavailable` on backend failure.
        """
        ...

    async def update_details(self, details: Sequence[InstructionDetail]) -> int:
        """`update_detail` for each of ``details``, in one write where the store allows.

        Each (one version per file) is its own compare-and-set on ``version``:
        one that lost to another writer is not written, and the others still
        are. Returns how many were written. Raises `DependencyUnavailable` on
        backend failure, with any number of them written (none, where the
        batch is one write).
        """
        ...

    async def find_details(self, query: DetailQuery) -> list[InstructionDetail]:
        """Details matching every given filter, oldest update first, at most ``limit``."""
        ...

    async def ping(self) -> None:
        """Raise `DependencyUnavailable` unless the backend answers."""
        ...


# --------------------------------------------------------------------------- broker


@attrs.frozen
class JobMessage:
    """The doorbell for one file: the repository holds everything else.

    ``dedup_id`` lets a broker drop a second publish of the same outbox record.
    """

    instruction_id: str
    instruction_detail_id: str
    user_id: str
    dedup_id: str

    def to_dict(self) -> dict[str, str]:
        """The wire form (JSON)."""
        return attrs.asdict(self)


@attrs.frozen
class Notification:
    """A file's status change, published on ``notifications.sse``."""

    user_id: str
    instruction_id: str
    instruction_detail_id: str
    status: Status
    product_key: str = ""
    output_size: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The wire form (JSON)."""
        return attrs.asdict(self)


class Delivery(Protocol):
    """One received job, to be settled exactly once with ack or nak."""

    @property
    def job(self) -> JobMessage:
        """The message."""
        ...

    @property
    def delivery_count(self) -> int:
        """How many times the broker has delivered this message (1 the first time)."""
        ...

    async def ack(self) -> None:
        """Done with it: the broker forgets the message."""
        ...

    async def nak(self, delay: float = 0.0) -> None:
        """Give it back to be delivered again after ``delay`` seconds."""
        ...

    async def in_progress(self) -> None:
        """Tell the broker the work goes on (extends its ack deadline)."""
        ...


class MessageBroker(Protocol):
    """Jobs to the workers and notifications to whoever listens.

    The broker is only a doorbell: losing a job delays a file (the reaper
    finds it in the repository) but never loses it.
    """

    async def publish_job(self, job: JobMessage) -> None:
        """Queue a job; a second publish with the same ``dedup_id`` may be dropped."""
        ...

    def jobs(self) -> AsyncIterator[Delivery]:
        """Deliveries for this worker, forever; each must be acked or naked.

        Cancelling a pending ``anext`` loses no job and leaves the iterator usable.
        """
        ...

    async def publish_notification(self, notification: Notification) -> None:
        """Send a notification to every current subscriber."""
        ...

    def notifications(self) -> AbstractAsyncContextManager[AsyncIterator[Notification]]:
        """Subscribe: inside the block, every notification published after entry, by any process.

        The subscription exists once the block is entered (nothing published
        after that is missed) and ends with the block.
        """
        ...

    async def queue_depth(self) -> int:
        """Jobs waiting to be delivered (for metrics)."""
        ...

    async def ping(self) -> None:
        """Raise `DependencyUnavailable` unless the broker answers."""
        ...


# --------------------------------------------------------------------------- processor


@attrs.frozen
class ProcessingRequest:
    """One file to process: local paths so a process pool can take it."""

    product_key: str
    params: Mapping[str, Any]
    source: Path
    destination: Path
    max_pixels: int
    max_frames: int


@attrs.frozen
class ProcessingResult:
    """What the processor wrote and learned."""

    format: str
    mime_type: str
    extension: str
    size: int
    width: int | None
    height: int | None
    input: ImageInfo
    metadata: dict[str, Any] = attrs.field(factory=dict)


class ImageProcessor(Protocol):
    """Runs products on local files. Synchronous and CPU-bound; safe in a process pool.

    Only the formats of `imagecore.products.INPUT_FORMATS` are decoded; pixel
    and frame limits are read from the header before decoding.
    """

    def process(self, request: ProcessingRequest) -> ProcessingResult:
        """Run the product and write ``request.destination``.

        Raises `UnsupportedMediaType`, `ImageTooLarge`, `CorruptImage` or
        `ProcessingError` with a message a person can act on.
        """
        ...


#: What the worker runs a request with: an `ImageProcessor` off the event loop (in a pool
#: of processes, say), answering when the output is written.
RunProcessor = Callable[[ProcessingRequest], Awaitable[ProcessingResult]]


class Webhooks(Protocol):
    """Tells a client's own service that its instruction finished (``notify_url``)."""

    async def check(self, url: str) -> None:
        """Raise `ValidationError` naming ``notify_url`` if no delivery could reach ``url``."""
        ...

    def send(self, url: str, delivery: str, payload: Mapping[str, Any]) -> None:
        """Queue the POST of ``payload`` to ``url``, retried in the background.

        ``delivery`` identifies the event, for the receiver to de-duplicate on.
        """
        ...

    async def close(self) -> None:
        """Stop pending deliveries and release the client."""
        ...
