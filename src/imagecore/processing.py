"""Use cases of the worker side: claim a file, process it under a lease, record the outcome.

The repository is the system of record and the broker only a doorbell. A
worker claims a file by a conditional write (PENDING -> PROCESSING under a
fresh lease), and every later write is conditional on the version it holds,
so a worker that lost its lease changes nothing. Outputs go to a key derived
from the file's id: writing one twice leaves one object. What a dead worker
or a lost message leaves behind is `imagecore.recovery`'s.

Why one module: claim, lease, attempt and outcome are one protocol of
conditional writes on one file's version; apart, each would reach into the
others' private steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import attrs

from imagecore.errors import DependencyUnavailable, ImageCoreError, TooManyAttempts
from imagecore.formats import MIME_TYPES
from imagecore.model import TERMINAL, Instruction, InstructionDetail, OutputFile, Status
from imagecore.ports import (
    ImageStorage,
    InstructionRepository,
    MessageBroker,
    Notification,
    ProcessingRequest,
    ProcessingResult,
    RunProcessor,
)
from imagecore.products import find_product

__all__ = [
    "Handled",
    "Instructions",
    "Outcome",
    "PipelineSettings",
    "announce",
    "notification_for",
    "process_detail",
    "tell",
    "to_the_end",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

Clock = Callable[[], datetime]
Heartbeat = Callable[[], Awaitable[None]]

#: Reads and compare-and-sets of a PENDING file before its job is given back.
_CLAIM_TRIES = 5


@attrs.frozen
class PipelineSettings:
    """Timings and budgets of the worker side."""

    lease_seconds: float = 60.0
    max_attempts: int = 3
    republish_after_seconds: float = 600.0
    outbox_grace_seconds: float = 5.0
    retention_seconds: float = 24 * 3600.0
    stale_after_seconds: float = 6 * 3600.0
    #: Files cleanup deletes and marks at a time (one storage call, one repository write).
    #: Reads wait behind a batch's write, so it stays small (docs/decisions/0008-cleanup-batch.md).
    cleanup_batch: int = 100


class Outcome(enum.Enum):
    """What the worker should tell the broker about a job."""

    ACK = "ack"  # nothing (more) to do here, or someone else owns the file
    FINISHED = "finished"  # ack: this call wrote the file's final state (DONE or FAILED)
    RETRY = "retry"  # nak with backoff: a transient failure, the file is PENDING again


@attrs.frozen
class Handled:
    """What became of a job: the broker's answer, and the final state this call wrote.

    ``final`` is set exactly when ``outcome`` is FINISHED.
    """

    outcome: Outcome
    final: InstructionDetail | None = None


_ACK = Handled(Outcome.ACK)
_RETRY = Handled(Outcome.RETRY)


class Instructions:
    """Instructions by id, read from the repository once and then kept (the latest ``size``).

    An instruction never changes once created, so a worker taking the files of
    one instruction one after the other reads it once, not once per file.
    """

    def __init__(self, repo: InstructionRepository, size: int = 256) -> None:
        self._repo = repo
        self._size = size
        self._kept: OrderedDict[str, Instruction] = OrderedDict()

    async def get(self, instruction_id: str) -> Instruction:
        """The instruction; `NotFound` if there is none."""
        if (kept := self._kept.get(instruction_id)) is not None:
            self._kept.move_to_end(instruction_id)
            return kept
        instruction = await self._repo.get_instruction(instruction_id)
        self._kept[instruction_id] = instruction
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return instruction


def notification_for(detail: InstructionDetail) -> Notification:
    """The notification that tells listeners where a file stands.

    ``at`` is when the status changed: for a final file its ``finished_at``,
    so a final notification sent again (by the reaper, after cleanup touched
    the file) is the same notification.
    """
    changed = detail.finished_at if detail.status in TERMINAL else None
    return Notification(
        user_id=detail.user_id,
        instruction_id=detail.instruction_id,
        instruction_detail_id=detail.id,
        status=detail.status,
        product_key=detail.product_key,
        output_size=detail.output.size if detail.output else None,
        error_code=detail.error_code,
        error_message=detail.error_message,
        at=(changed or detail.updated_at).isoformat(),
    )


async def tell(
    repo: InstructionRepository, broker: MessageBroker, detail: InstructionDetail
) -> None:
    """Notify the change just written: reliably if it is final, else best effort."""
    if detail.status in TERMINAL:
        await announce(repo, broker, detail)
    else:
        await _notify(broker, detail)


async def announce(
    repo: InstructionRepository, broker: MessageBroker, detail: InstructionDetail
) -> None:
    """Publish a final file's notification, then clear its outbox record.

    Until the record is cleared the reaper publishes it again: a listener
    gets the final notification at least once, the same one if repeated.
    """
    try:
        await broker.publish_notification(notification_for(detail))
    except ImageCoreError as exc:
        _log.warning("final notification for %s not published, the reaper will: %s", detail.id, exc)
        return
    try:
        await repo.update_detail(detail.announced())
    except ImageCoreError as exc:
        _log.warning("outbox record of %s not cleared: %s", detail.id, exc)


async def _notify(broker: MessageBroker, detail: InstructionDetail) -> None:
    try:
        await broker.publish_notification(notification_for(detail))
    except ImageCoreError as exc:
        # Notifications are best effort: the repository already holds the truth.
        _log.warning("notification for %s not published: %s", detail.id, exc)


class _Lease:
    """Holds a claimed file and renews its lease while the work goes on.

    ``current`` is always the latest version written, so the final write is
    conditional on exactly what this worker last wrote; ``lost`` turns true
    when a renewal finds that somebody else changed the file.

    It is stopped by a flag, never cancelled: a renewal cut off mid-write may
    still land unseen (leaving the final write one version behind), and a
    cancellation swallowed inside a driver would leave it renewing forever,
    holding the file PROCESSING with nobody working on it.
    """

    def __init__(
        self,
        repo: InstructionRepository,
        claimed: InstructionDetail,
        clock: Clock,
        settings: PipelineSettings,
        heartbeat: Heartbeat | None,
    ) -> None:
        self.current = claimed
        self.lost = False
        self._repo = repo
        self._clock = clock
        self._seconds = settings.lease_seconds
        self._heartbeat = heartbeat
        self._stopping = asyncio.Event()

    async def keep(self) -> None:
        while not self.lost:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._seconds / 3):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            now = self._clock()
            renewed = self.current.renew(now, now + timedelta(seconds=self._seconds))
            try:
                if await self._repo.update_detail(renewed):
                    self.current = renewed
                else:
                    self.lost = True
            except ImageCoreError as exc:
                # The database is briefly away: try again next round (the lease has
                # two more rounds before it runs out), the work goes on meanwhile.
                _log.warning("lease of %s not renewed: %s", renewed.id, exc)
            if self._heartbeat is not None:
                await self._heartbeat()

    async def stop(self, keeper: asyncio.Task[None]) -> None:
        """Stop renewing; a renewal under way finishes first (and ``current`` follows it)."""
        self._stopping.set()
        await asyncio.wait([keeper])
        if not keeper.cancelled() and (exc := keeper.exception()) is not None:
            _log.warning("lease keeper of %s failed: %r", self.current.id, exc)


async def process_detail(  # noqa: PLR0913 - the worker's ports and its facts
    repo: InstructionRepository,
    storage: ImageStorage,
    broker: MessageBroker,
    run: RunProcessor,
    *,
    detail_id: str,
    scratch: Path,
    clock: Clock,
    settings: PipelineSettings,
    heartbeat: Heartbeat | None = None,
    instructions: Instructions | None = None,
) -> Handled:
    """Claim one file, process it and record DONE or FAILED (or PENDING to retry).

    ``heartbeat`` is called while the work goes on (the broker's in-progress
    signal), at each renewal of the lease. ``instructions`` keeps the
    instructions a worker has read (else each file reads its own).
    """
    claimed = await _claim(repo, broker, detail_id, clock(), settings)
    if isinstance(claimed, Handled):
        return claimed
    lease = _Lease(repo, claimed, clock, settings, heartbeat)
    keeper = asyncio.create_task(lease.keep())
    instructions = instructions or Instructions(repo, size=1)
    try:
        finished = await _attempt(
            instructions, storage, run, lease=lease, scratch=scratch, clock=clock
        )
    except asyncio.CancelledError:

        async def release() -> None:
            await lease.stop(keeper)
            await _hand_back(repo, broker, lease, clock())

        await to_the_end(release())
        raise
    finally:
        await lease.stop(keeper)
    if not isinstance(finished, ImageCoreError) and finished.version <= lease.current.version:
        # A renewal landed while the attempt ended: write on top of it (a renewal
        # changes nothing the final state keeps).
        finished = attrs.evolve(finished, version=lease.current.version + 1)
    if isinstance(finished, ImageCoreError):
        return await _retry_or_fail(
            repo, broker=broker, claimed=lease.current, exc=finished, now=clock(), settings=settings
        )
    if await repo.update_detail(finished):
        await tell(repo, broker, finished)
        return Handled(Outcome.FINISHED, finished)
    await _drop_unrecorded_output(repo, storage, finished)
    return _ACK


async def _drop_unrecorded_output(
    repo: InstructionRepository, storage: ImageStorage, lost: InstructionDetail
) -> None:
    """Delete the output of an attempt whose file ended without it (its job was deleted).

    Only then: a file that is still live may be finished by the worker that took it
    over, which writes the same key.
    """
    if lost.output is None:
        return
    try:
        now = await repo.get_detail(lost.id)
        if now.status is Status.FAILED or now.is_cleaned:
            await storage.delete(lost.output.key)
    except ImageCoreError as exc:  # cleanup does not find it: say so, and go on
        _log.warning("output %s of %s not removed: %s", lost.output.key, lost.id, exc)


async def _claim(
    repo: InstructionRepository,
    broker: MessageBroker,
    detail_id: str,
    now: datetime,
    settings: PipelineSettings,
) -> InstructionDetail | Handled:
    """Take the file under a fresh lease, or say why there is nothing to do.

    A lost compare-and-set does not mean another worker has the file: a write
    that leaves it PENDING (the API clearing its outbox record just after the
    publish, the reaper re-publishing it) may have gone first. So the file is
    read again and claimed again while it is still PENDING; acking its job
    instead would strand it until the reaper's next publish gets through.
    """
    for tries in range(_CLAIM_TRIES):
        if tries:
            await asyncio.sleep(0.05 * tries)  # a racing writer's version lock is brief
        detail = await repo.get_detail(detail_id)
        if detail.status is not Status.PENDING:
            # Final, or another worker holds it: its lease decides, not this message.
            return _ACK
        if detail.attempts >= settings.max_attempts:
            failed = detail.fail(TooManyAttempts.code, _attempts_message(detail), now)
            if await repo.update_detail(failed):
                await tell(repo, broker, failed)
                return Handled(Outcome.FINISHED, failed)
            continue
        lease_until = now + timedelta(seconds=settings.lease_seconds)
        claimed = detail.claim(uuid.uuid4().hex, now, lease_until)
        if await repo.update_detail(claimed):
            await tell(repo, broker, claimed)
            return claimed
    return _RETRY  # still PENDING but never ours: the broker delivers the job again


async def to_the_end(work: Awaitable[_T]) -> _T:
    """Await ``work`` to its end even if the caller is cancelled again meanwhile.

    For the way out of a cancelled task: the cleanup (a release, a nak) must
    land, and whoever stops the task may repeat the request while it runs (a
    driver can swallow one). The caller is already ending with its own
    cancellation, so the repeated requests are not lost by waiting.
    """
    task = asyncio.ensure_future(work)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
    return task.result()


async def _hand_back(
    repo: InstructionRepository, broker: MessageBroker, lease: _Lease, now: datetime
) -> None:
    """The worker is stopping and this attempt will not finish: release the file now.

    Another worker can take it at once instead of after the lease runs out; the
    attempt is refunded (a stopping worker is not the file's fault). The caller
    gives its job back to the broker (a nak), so no new job is recorded.
    """
    if lease.lost:
        return
    released = lease.current.release(
        now, "worker_stopped", "the worker stopped before finishing; it is retried", refund=True
    )
    try:
        if await repo.update_detail(released):
            await tell(repo, broker, released)
    except ImageCoreError as exc:
        _log.warning("%s not handed back, its lease will run out: %s", released.id, exc)


async def _attempt(  # noqa: PLR0913 - the pieces of one attempt
    instructions: Instructions,
    storage: ImageStorage,
    run: RunProcessor,
    *,
    lease: _Lease,
    scratch: Path,
    clock: Clock,
) -> InstructionDetail | ImageCoreError:
    """The file as it should be written next, or the error to retry it for."""
    try:
        output, result = await _run(instructions, storage, run, lease.current, scratch)
    except ImageCoreError as exc:
        if not exc.retryable:  # retrying cannot fix it: the file fails at once with its reason
            return lease.current.fail(exc.code, exc.message, clock())
        return exc
    except Exception as exc:  # noqa: BLE001 - a bug must not strand the file: it costs an attempt
        _log.exception("unexpected error while processing %s", lease.current.id)
        return ImageCoreError(f"an unexpected error stopped the processing ({type(exc).__name__})")
    return lease.current.complete(
        output, result.metadata, clock(), width=result.input.width, height=result.input.height
    )


def _attempts_message(detail: InstructionDetail) -> str:
    reason = f": {detail.error_message}" if detail.error_message else ""
    return f"gave up after {detail.attempts} attempts{reason}"


async def _retry_or_fail(  # noqa: PLR0913 - the state it decides from
    repo: InstructionRepository,
    *,
    broker: MessageBroker,
    claimed: InstructionDetail,
    exc: ImageCoreError,
    now: datetime,
    settings: PipelineSettings,
) -> Handled:
    # A dependency that was briefly away is not the file's fault: retry it with
    # backoff without spending its budget (cleanup fails it if it never recovers).
    if claimed.attempts >= settings.max_attempts and exc.spends_attempt:
        message = f"gave up after {claimed.attempts} attempts: {exc.message}"
        failed = claimed.fail(exc.code, message, now)
        if await repo.update_detail(failed):
            await tell(repo, broker, failed)
            return Handled(Outcome.FINISHED, failed)
        return _ACK
    _log.warning("%s goes back to the queue: %s", claimed.id, exc)
    released = claimed.release(now, exc.code, exc.message, refund=not exc.spends_attempt)
    if await repo.update_detail(released):
        await tell(repo, broker, released)
        return _RETRY
    return _ACK


async def _run(
    instructions: Instructions,
    storage: ImageStorage,
    run: RunProcessor,
    claimed: InstructionDetail,
    scratch: Path,
) -> tuple[OutputFile, ProcessingResult]:
    instruction = await instructions.get(claimed.instruction_id)
    product = find_product(claimed.product_key)
    destination = scratch / f"{claimed.id}.out"
    try:
        # A caller's folder may not exist yet (or was cleaned away): one stat once it does.
        scratch.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a stat, not a transfer
    except OSError as exc:
        raise DependencyUnavailable("the scratch folder cannot be made", str(exc)) from exc
    try:
        # The storage's own file, or a copy it removes after: only read, and not deleted
        # while the file is held (cleanup spares it).
        async with storage.local_copy(claimed.original_key) as source:
            result = await run(
                ProcessingRequest(
                    product_key=product.key,
                    params=instruction.params,
                    source=source,
                    destination=destination,
                    max_pixels=product.limits.max_pixels,
                    max_frames=product.limits.max_frames,
                )
            )
        mime = MIME_TYPES.get(result.format, result.mime_type)
        key = f"outputs/{claimed.instruction_id}/{claimed.id}.{result.extension}"
        await storage.put_file(key, destination, mime)
        _log.info("output written: %s", key)
    finally:
        destination.unlink(missing_ok=True)  # what a failed processor or put left
    stem = claimed.original_name.rsplit(".", 1)[0] or "image"
    output = OutputFile(
        key=key,
        name=f"{stem}.{result.extension}",
        size=result.size,
        mime_type=mime,
        width=result.width,
        height=result.height,
    )
    return output, result
