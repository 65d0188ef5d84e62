"""Use cases of the API side: instructions, uploads, reads and downloads.

Each takes the ports it needs as arguments and the current time as ``now``.
Ownership is checked here, once: another user's object and a missing one
raise the same `NotFound`, so no caller can tell them apart.

Why one module: every API use case goes through the same ownership check
and the same view of an instruction; the upload's streaming checks are the
largest part.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import datetime

import attrs

from imagecore.errors import (
    ConflictError,
    DependencyUnavailable,
    FileTooLarge,
    ImageCoreError,
    NotFound,
    ServiceBusy,
    TooManyFiles,
    UnsupportedMediaType,
    ValidationError,
)
from imagecore.formats import EXTENSIONS, MIME_TYPES, SNIFF_BYTES, sniff
from imagecore.model import (
    TERMINAL,
    Instruction,
    InstructionDetail,
    Status,
    counted_status,
    is_object_id,
    new_id,
    paired_record_id,
)
from imagecore.ports import (
    ImageStorage,
    InstructionQuery,
    InstructionRepository,
    JobMessage,
    MessageBroker,
    Page,
    StoredObject,
)
from imagecore.processing import tell
from imagecore.products import Product, find_product

__all__ = [
    "CANCELLED",
    "DetailRecord",
    "Download",
    "InstructionView",
    "check_notify_url",
    "counted_view",
    "create_instruction",
    "delete_files",
    "finished_instruction",
    "get_detail",
    "get_instruction",
    "get_record",
    "instruction_view",
    "job_for",
    "list_details",
    "list_instructions",
    "open_download",
    "owned_instruction",
    "publish_recorded",
    "upload_file",
]

_log = logging.getLogger(__name__)
_MAX_NAME, _MAX_EXTENSION = 200, 10
_MAX_URL = 2048


@attrs.frozen
class InstructionView:
    """An instruction with the status and counts derived from its files."""

    instruction: Instruction
    status: Status
    counts: dict[str, int]


def instruction_view(instruction: Instruction, details: list[InstructionDetail]) -> InstructionView:
    """An instruction with the status and counts derived from ``details``."""
    statuses = [d.status for d in details]
    return counted_view(instruction, {s: statuses.count(s) for s in Status})


def counted_view(instruction: Instruction, counts: Mapping[Status, int]) -> InstructionView:
    """An instruction with the status derived from how many of its files are in each status."""
    shown = {s.value: counts.get(s, 0) for s in Status}
    shown["total"] = sum(shown.values())
    return InstructionView(instruction, counted_status(counts), shown)


async def create_instruction(  # noqa: PLR0913 - a use case takes its port and its facts
    repo: InstructionRepository,
    *,
    user_id: str,
    product_ref: str,
    params: Mapping[str, object] | None,
    now: datetime,
    notify_url: str | None = None,
) -> InstructionView:
    """Create an instruction for a product named by id or key, with checked parameters."""
    product = find_product(product_ref)
    checked = product.validate(params)
    if notify_url is not None:
        check_notify_url(notify_url)
    instruction = Instruction(
        id=new_id(now.timestamp()),
        user_id=user_id,
        product_id=product.id,
        product_key=product.key,
        params=checked,
        created_at=now,
        updated_at=now,
        notify_url=notify_url,
    )
    await repo.add_instruction(instruction)
    return instruction_view(instruction, [])


async def finished_instruction(
    repo: InstructionRepository, instruction: Instruction
) -> list[InstructionDetail] | None:
    """The instruction's files if every one is final (DONE or FAILED), else None."""
    details = await repo.list_details(instruction.id)
    if not details or any(d.status not in TERMINAL for d in details):
        return None
    return details


def check_notify_url(url: str) -> None:
    """Refuse a webhook address that is not a plain http(s) URL we could call."""
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if (
        scheme.lower() not in {"http", "https"}
        or not sep
        or not host
        or "@" in host
        or len(url) > _MAX_URL
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        raise ValidationError("notify_url must be an http:// or https:// URL without credentials")


async def _owned_instruction(
    repo: InstructionRepository, user_id: str, instruction_id: str
) -> Instruction:
    if not is_object_id(instruction_id):
        raise NotFound("instruction not found")
    try:
        instruction = await repo.get_instruction(instruction_id)
    except NotFound:
        raise NotFound("instruction not found") from None
    if instruction.user_id != user_id:
        raise NotFound("instruction not found")
    return instruction


async def owned_instruction(
    repo: InstructionRepository, *, user_id: str, instruction_id: str
) -> Instruction:
    """The caller's instruction, without reading its files; `NotFound` otherwise."""
    return await _owned_instruction(repo, user_id, instruction_id)


async def get_instruction(
    repo: InstructionRepository, *, user_id: str, instruction_id: str
) -> InstructionView:
    """The caller's instruction with its derived status; `NotFound` otherwise."""
    instruction = await _owned_instruction(repo, user_id, instruction_id)
    return instruction_view(instruction, await repo.list_details(instruction.id))


async def list_instructions(
    repo: InstructionRepository, query: InstructionQuery
) -> Page[InstructionView]:
    """One page of the caller's instructions."""
    page = await repo.list_instructions(query)
    counts = await repo.file_counts([i.id for i in page.items])  # none of their files is read
    views = [counted_view(i, counts.get(i.id, {})) for i in page.items]
    return Page(views, page.total, page.page, page.size)


async def list_details(
    repo: InstructionRepository, *, user_id: str, instruction_id: str
) -> list[InstructionDetail]:
    """The files of the caller's instruction, in upload order."""
    instruction = await _owned_instruction(repo, user_id, instruction_id)
    return await repo.list_details(instruction.id)


@attrs.frozen
class DetailRecord:
    """One of a file's two records, as the old service named them: its input or its output.

    Both are views of the one `InstructionDetail` that holds the file's state;
    the output record's id is `paired_record_id` of the detail's.
    """

    detail: InstructionDetail
    is_output: bool

    @property
    def id(self) -> str:
        """This record's id."""
        return paired_record_id(self.detail.id) if self.is_output else self.detail.id


async def get_record(
    repo: InstructionRepository, *, user_id: str, instruction_id: str, record_id: str
) -> DetailRecord:
    """The input or output record ``record_id`` of the caller's instruction; `NotFound` else."""
    instruction = await _owned_instruction(repo, user_id, instruction_id)
    if not is_object_id(record_id):
        raise NotFound("file not found")
    for candidate, is_output in ((record_id, False), (paired_record_id(record_id), True)):
        try:
            detail = await repo.get_detail(candidate)
        except NotFound:
            continue
        if detail.instruction_id == instruction.id:
            return DetailRecord(detail, is_output=is_output)
    raise NotFound("file not found")


async def get_detail(
    repo: InstructionRepository, *, user_id: str, instruction_id: str, detail_id: str
) -> InstructionDetail:
    """One file of the caller's instruction; `NotFound` for anything else."""
    instruction = await _owned_instruction(repo, user_id, instruction_id)
    if not is_object_id(detail_id):
        raise NotFound("file not found")
    try:
        detail = await repo.get_detail(detail_id)
    except NotFound:
        raise NotFound("file not found") from None
    if detail.instruction_id != instruction.id:
        raise NotFound("file not found")
    return detail


def job_for(detail: InstructionDetail) -> JobMessage:
    """The job message for ``detail`` as recorded (deduplicated per recorded version).

    Publishing the same outbox record twice (the first publish went through,
    clearing the record did not) sends the same id, so the broker drops the
    second. A job sent again on purpose (the reaper re-sending one the broker
    lost, a file handed back) goes from a later version, with a new id: one
    with the first id would be dropped for as long as the broker remembers it
    (JetStream: two minutes).
    """
    return JobMessage(
        instruction_id=detail.instruction_id,
        instruction_detail_id=detail.id,
        user_id=detail.user_id,
        dedup_id=f"{detail.id}:{detail.attempts}:{detail.version}",
    )


class _Sniffer:
    """Counts an upload as it streams, checks its format from the first bytes."""

    def __init__(self, chunks: AsyncIterable[bytes], product: Product, max_bytes: int) -> None:
        self._chunks = chunks
        self._product = product
        self._max_bytes = max_bytes
        self.size = 0
        self.format: str | None = None

    async def _checked(self, head: bytes) -> bytes:
        fmt = sniff(head)
        if fmt is None or fmt not in self._product.limits.input_formats:
            accepted = ", ".join(self._product.limits.input_formats)
            raise UnsupportedMediaType(
                f"this file is not an image in a format we accept ({accepted})"
            )
        self.format = fmt
        return head

    def _count(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max_bytes:
            raise FileTooLarge(
                f"the file is larger than {self._max_bytes} bytes, the limit of this product"
            )

    async def stream(self) -> AsyncIterator[bytes]:
        head = b""
        async for chunk in self._chunks:
            if not chunk:
                continue
            self._count(chunk)
            if self.format is None:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                chunk = await self._checked(head)  # noqa: PLW2901 - the buffered head goes out first
            yield chunk
        if self.format is None:
            if not head:
                raise ValidationError("the file is empty")
            yield await self._checked(head)


async def upload_file(  # noqa: PLR0913 - a use case takes its ports and its facts
    repo: InstructionRepository,
    storage: ImageStorage,
    broker: MessageBroker,
    *,
    user_id: str,
    instruction_id: str,
    filename: str,
    chunks: AsyncIterable[bytes],
    now: datetime,
    max_bytes: int | None = None,
    max_queued: int | None = None,
) -> InstructionDetail:
    """Stream one upload to storage, record it PENDING and ring the workers' doorbell.

    The bytes are counted and sniffed as they stream; a file over the
    product's limit (or ``max_bytes``, a deployment's lower cap) or in a
    format we do not decode is refused and leaves nothing stored. Past
    ``max_queued`` waiting jobs the upload is refused with `ServiceBusy`.
    A failed publish loses nothing: the file is PENDING in the repository
    and the reaper queues it again.
    """
    instruction = await _owned_instruction(repo, user_id, instruction_id)
    product = find_product(instruction.product_key)
    if max_queued and await broker.queue_depth() >= max_queued:
        raise ServiceBusy(f"{max_queued} files are waiting already; try again in a minute")
    max_files = product.limits.max_files_per_instruction
    # Checked again, in one step with the insert, once the bytes are stored: this
    # early check only spares a full instruction the upload's work.
    if await repo.count_details(instruction.id) >= max_files:
        raise _too_many(product.key, max_files)
    detail_id = new_id(now.timestamp())
    # Keys hold only ids we made (hex), never user input such as a user id or a file name.
    key = f"originals/{instruction.id}/{detail_id}"
    limit = product.limits.max_file_bytes
    sniffer = _Sniffer(chunks, product, min(limit, max_bytes) if max_bytes else limit)
    stored = await storage.put(key, sniffer.stream(), "application/octet-stream")
    fmt = sniffer.format or "jpeg"
    detail = InstructionDetail(
        id=detail_id,
        instruction_id=instruction.id,
        user_id=user_id,
        product_key=product.key,
        original_name=_safe_name(filename, EXTENSIONS[fmt]),
        original_key=stored.key,
        size=stored.size,
        mime_type=MIME_TYPES[fmt],
        created_at=now,
        updated_at=now,
        outbox=True,
    )
    try:
        await repo.add_detail(detail, max_files=max_files)
    except TooManyFiles:
        await storage.delete(key)
        raise _too_many(product.key, max_files) from None
    except (DependencyUnavailable, ConflictError) as exc:
        # The insert may have landed with its answer lost (the id is fresh, so a
        # conflict means a retried insert found its own record): what is stored decides.
        if not await _settled(repo, storage, detail, exc):
            raise
    except BaseException:
        await storage.delete(key)
        raise
    return await publish_recorded(repo, broker, detail, now)


#: Waits before each read of a record whose insert lost its answer.
_RECHECK_DELAYS = (0.1, 0.5, 1.5)


async def _settled(
    repo: InstructionRepository, storage: ImageStorage, detail: InstructionDetail, exc: Exception
) -> bool:
    """Whether an insert that raised ``exc`` landed after all: True if it did.

    Not landed, the original is deleted and False returned. When the
    repository cannot tell, the original is kept (a record that did land
    must find it) and `DependencyUnavailable` says the outcome is unknown.
    """
    for delay in _RECHECK_DELAYS:
        await asyncio.sleep(delay)
        try:
            await repo.get_detail(detail.id)
        except NotFound:
            await storage.delete(detail.original_key)
            return False
        except DependencyUnavailable:
            continue
        _log.warning("%s was recorded although its insert failed: %s", detail.id, exc)
        return True
    _log.warning(
        "%s may or may not be recorded; its original %s is kept", detail.id, detail.original_key
    )
    raise DependencyUnavailable(
        "the database did not confirm the upload: list the instruction's files before "
        "sending it again",
        str(exc),
    ) from exc


def _too_many(product_key: str, max_files: int) -> TooManyFiles:
    return TooManyFiles(f"an instruction of {product_key} takes at most {max_files} files")


async def publish_recorded(
    repo: InstructionRepository, broker: MessageBroker, detail: InstructionDetail, now: datetime
) -> InstructionDetail:
    """Publish the job of a file whose outbox record is set, then clear the record.

    A failed publish leaves the record for the reaper; a failed clear only
    means one more publish later, which the claim makes harmless.
    """
    try:
        await broker.publish_job(job_for(detail))
    except ImageCoreError as exc:
        _log.warning("job for %s not published, the reaper will queue it: %s", detail.id, exc)
        return detail
    cleared = detail.published(now)
    try:
        if await repo.update_detail(cleared):
            return cleared
    except ImageCoreError as exc:
        _log.warning("outbox record of %s not cleared: %s", detail.id, exc)
    return detail


#: The error code of a file whose owner deleted its job before it finished.
CANCELLED = "cancelled"


async def delete_files(  # noqa: PLR0913 - a use case takes its ports and its facts
    repo: InstructionRepository,
    storage: ImageStorage,
    broker: MessageBroker,
    *,
    user_id: str,
    instruction_id: str,
    now: datetime,
) -> list[InstructionDetail]:
    """Delete every stored file of the caller's instruction now, as retention would later.

    Files not finished yet end FAILED (``cancelled``) first: a worker holding one
    loses its next conditional write, so it changes nothing. The instruction and
    its records stay (its history), each file marked cleaned. Returns the files.
    """
    instruction = await _owned_instruction(repo, user_id, instruction_id)
    for detail in await repo.list_details(instruction.id):
        if detail.status not in TERMINAL:
            failed = detail.fail(CANCELLED, "cancelled: its job was deleted", now)
            if await repo.update_detail(failed):
                await tell(repo, broker, failed)
    kept = [d for d in await repo.list_details(instruction.id) if not d.is_cleaned]
    # Only final files lose their bytes: one whose failure lost a race is left to cleanup.
    due = [d for d in kept if d.status in TERMINAL]
    await storage.delete_many(
        [d.original_key for d in due] + [d.output.key for d in due if d.output]
    )
    await repo.update_details([d.mark_cleaned(now) for d in due])
    return await repo.list_details(instruction.id)


def _safe_name(filename: str, extension: str) -> str:
    # Keep the last path component only, drop control characters, bound the length
    # (keeping the extension a long name had).
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable() and c not in '"<>|*?:').strip(" .")
    if len(base) > _MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        suffix = f".{ext}" if dot and stem and len(ext) <= _MAX_EXTENSION else ""
        base = base[: _MAX_NAME - len(suffix)] + suffix
    return base or f"upload.{extension}"


@attrs.frozen
class Download:
    """A stored file ready to stream to a client."""

    name: str
    content_type: str
    stored: StoredObject
    chunks: AsyncIterator[bytes]


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


async def open_download(  # noqa: PLR0913 - ports and the request's facts
    repo: InstructionRepository,
    storage: ImageStorage,
    *,
    user_id: str,
    instruction_id: str,
    detail_id: str,
    original: bool | None = None,
    body: bool = True,
) -> Download:
    """Open the processed file or the original of the caller's file for streaming.

    ``detail_id`` names the file's input record (its original, unless
    ``original`` is False) or its output record (its output, unless
    ``original`` is True). The description and the bytes come from one
    request to the storage. With ``body=False`` (a HEAD, a conditional GET)
    the file is only described, nothing is opened, and ``chunks`` is empty.
    """
    record = await get_record(
        repo, user_id=user_id, instruction_id=instruction_id, record_id=detail_id
    )
    detail = record.detail
    if original is None:
        original = not record.is_output
    if detail.is_cleaned:
        raise NotFound("this file was removed by the retention policy")
    if original:
        key, name, content_type = detail.original_key, detail.original_name, detail.mime_type
    elif detail.output is None:
        raise NotFound(f"this file has no output yet (status {detail.status})")
    else:
        key, name = detail.output.key, detail.output.name
        content_type = detail.output.mime_type
    if not body:
        return Download(name, content_type, await storage.stat(key), _no_chunks())
    stored, chunks = await storage.fetch(key)
    return Download(name, content_type, stored, chunks)
