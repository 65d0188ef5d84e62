"""Use cases of recovery: requeue what a dead worker or a lost message left, clean up.

The reaper returns expired leases to PENDING (or FAILED past the attempt
budget), publishes unsent outbox records and re-publishes PENDING files
whose job the broker may have lost; cleanup deletes stored files past
retention and fails files that never finished.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from imagecore.errors import ImageCoreError, Stale, WorkerLost
from imagecore.model import TERMINAL, InstructionDetail, Status
from imagecore.ports import (
    DetailQuery,
    ImageStorage,
    InstructionRepository,
    MessageBroker,
)
from imagecore.processing import PipelineSettings, announce, tell
from imagecore.services import publish_recorded

__all__ = ["cleanup", "reap"]

_log = logging.getLogger(__name__)


async def reap(
    repo: InstructionRepository,
    broker: MessageBroker,
    *,
    now: datetime,
    settings: PipelineSettings,
    assume_orphaned: bool = False,
) -> int:
    """Find work a dead worker left or the broker never got, and queue it again.

    PROCESSING files whose lease ran out go back to PENDING (or FAILED past
    the attempt budget) with their outbox record set; files whose outbox
    record is set are published and the record cleared (a job for a PENDING
    file, the final notification for a DONE or FAILED one); PENDING files not
    touched for ``republish_after_seconds`` are published again in case the
    broker lost their job (when it holds fewer jobs than there are such
    files). ``assume_orphaned`` (the only worker is starting) treats every
    lease as expired and every PENDING file as due. Returns how many files
    were re-queued or failed.
    """
    touched = 0
    running = await repo.find_details(DetailQuery(statuses=frozenset({Status.PROCESSING})))
    for detail in running:
        if not (assume_orphaned or detail.lease_expired(now)):
            continue
        if detail.attempts >= settings.max_attempts:
            nxt = detail.fail(WorkerLost.code, _lost_message(detail), now)
        else:
            nxt = detail.release(
                now, WorkerLost.code, "the worker stopped before finishing", requeue=True
            )
        if await repo.update_detail(nxt):
            touched += 1
            await tell(repo, broker, nxt)
            if nxt.status is Status.PENDING:
                await publish_recorded(repo, broker, nxt, now)
    pending = frozenset({Status.PENDING})
    grace = timedelta(seconds=0 if assume_orphaned else settings.outbox_grace_seconds)
    due = timedelta(seconds=0 if assume_orphaned else settings.republish_after_seconds)
    # One query for both kinds of outbox record: a job to publish, a final notification.
    recorded = await repo.find_details(
        DetailQuery(statuses=pending | TERMINAL, outbox=True, updated_before=now - grace)
    )
    unpublished = [d for d in recorded if d.status is Status.PENDING]
    lost = await repo.find_details(
        DetailQuery(statuses=pending, outbox=False, updated_before=now - due)
    )
    if lost and not assume_orphaned and not await _fewer_queued(broker, len(lost)):
        # Every waiting file has a job in the broker (a backlog, not a loss): re-sending
        # them all would rewrite each record per interval and slow the backlog down.
        lost = []
    for detail in [*unpublished, *lost]:
        touched += 1
        # Publishing clears (or, for a lost job, refreshes) the record's time, so a
        # waiting file is published again at most once per interval.
        await publish_recorded(repo, broker, detail, now)
    for detail in [d for d in recorded if d.status in TERMINAL]:
        touched += 1
        await announce(repo, broker, detail)
    return touched


async def _fewer_queued(broker: MessageBroker, waiting: int) -> bool:
    """Whether the broker holds fewer jobs than ``waiting`` files: then some were lost.

    Each PENDING file has a job queued unless the broker lost it, so as long as
    the queue is at least as long as the list of long-waiting files, nothing
    says any of them is missing; once it drains below, the missing ones show.
    """
    try:
        return await broker.queue_depth() < waiting
    except ImageCoreError:
        return False  # the broker is away: a publish would fail too


def _lost_message(detail: InstructionDetail) -> str:
    return f"the worker stopped before finishing, {detail.attempts} times"


async def cleanup(
    repo: InstructionRepository,
    storage: ImageStorage,
    broker: MessageBroker,
    *,
    now: datetime,
    settings: PipelineSettings,
) -> tuple[int, int]:
    """Delete stored files past retention and fail files stuck for too long.

    Only final files (DONE or FAILED) lose their stored bytes, so cleanup
    never takes a file from under an unfinished job. A file is due once
    retention has passed since its upload and since its last change (a file
    finished late keeps its results that long), so the query reads only due
    files. It goes on in batches of ``settings.cleanup_batch`` until nothing
    is due: a backlog is drained in one run however large, and no single
    query or write holds the repository long. Returns (cleaned, failed).
    """
    cleaned = failed = 0
    cutoff = now - timedelta(seconds=settings.retention_seconds)
    due = DetailQuery(
        statuses=TERMINAL,
        created_before=cutoff,
        updated_before=cutoff,
        is_cleaned=False,
        limit=settings.cleanup_batch,
    )
    while batch := await repo.find_details(due):
        # The bytes go before the records say so: a pass cut off in between leaves
        # records that the next pass cleans again, never a record over kept bytes.
        keys = [d.original_key for d in batch] + [d.output.key for d in batch if d.output]
        await storage.delete_many(keys)
        written = await repo.update_details([d.mark_cleaned(now) for d in batch])
        cleaned += written
        # A short batch was the last; one where every write lost would come back as it was.
        if len(batch) < due.limit or not written:
            break
    stuck = DetailQuery(
        statuses=frozenset({Status.PENDING, Status.PROCESSING}),
        created_before=now - timedelta(seconds=settings.stale_after_seconds),
    )
    while batch := await repo.find_details(stuck):
        before = failed
        for detail in batch:
            nxt = detail.fail(Stale.code, "nobody finished this file in time; upload it again", now)
            if await repo.update_detail(nxt):
                failed += 1
                await tell(repo, broker, nxt)
        if len(batch) < stuck.limit or failed == before:
            break
    return cleaned, failed
