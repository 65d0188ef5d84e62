"""The worker: takes jobs from the broker and runs them through the pipeline.

Work runs with bounded concurrency (one job per pool process); the reaper
re-queues what a dead worker or a lost message left behind, and cleanup runs
on its own schedule. On stop it takes no new job and lets the ones in hand
finish within a grace period; what does not finish then is handed back at
once (PENDING again, its job returned to the broker), not left to wait for
its lease to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from imagecore import processing, recovery, services
from imagecore.errors import DependencyUnavailable, ImageCoreError, NotFound
from imagecore.model import Instruction, InstructionDetail, utc_now
from imagecore.ports import (
    Delivery,
    ImageStorage,
    InstructionRepository,
    MessageBroker,
    RunProcessor,
)
from imagecore.processing import Handled, Instructions, Outcome, PipelineSettings

__all__ = ["Observer", "OnFinished", "Worker"]

_log = logging.getLogger(__name__)


async def _cancelled(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until they end, asking again while one runs on.

    pymongo's async client can swallow a cancellation that lands inside one of
    its calls (the task then carries on as if nothing happened), so a single
    request may not stop a task; each new one lands at its next await.
    """
    tasks = list(tasks)
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.warning("%s ended with %r", task.get_name(), exc)


#: Told (product key, status, seconds) after each file this worker finishes.
Observer = Callable[[str, str, float], None]
#: Told (instruction, its files) when a file this worker finished was the last one.
OnFinished = Callable[[Instruction, list[InstructionDetail]], None]


class Worker:
    """Consumes jobs, reaps lost work and cleans up, until stopped.

    ``concurrency`` is the number of jobs held at once; the runner may have
    fewer slots (jobs beyond them are claimed and fetched, then wait for one).
    """

    def __init__(  # noqa: PLR0913 - the worker's ports and its knobs
        self,
        repo: InstructionRepository,
        storage: ImageStorage,
        broker: MessageBroker,
        run: RunProcessor,
        *,
        settings: PipelineSettings,
        concurrency: int,
        reap_interval: float = 15.0,
        cleanup_interval: float = 1800.0,
        scratch: Path | None = None,
        observe: Observer | None = None,
        on_finished: OnFinished | None = None,
    ) -> None:
        self._repo, self._storage, self._broker, self._run = repo, storage, broker, run
        self._settings = settings
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._reap_interval = reap_interval
        self._cleanup_interval = cleanup_interval
        self._scratch = scratch or Path(tempfile.gettempdir())
        self._observe = observe
        self._on_finished = on_finished
        self._instructions = Instructions(repo)
        self._in_hand: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self.processed = 0

    async def start(self, *, sole_worker: bool) -> None:
        """Recover lost work, then start consuming, reaping and cleaning up.

        ``sole_worker`` (the in-process broker) means no other worker can hold
        a lease, so files left PROCESSING by a crash are taken back at once.
        """
        self._scratch.mkdir(parents=True, exist_ok=True)
        await self._guarded(self._recover(sole_worker=sole_worker), "recovery")
        self._loops = [
            asyncio.create_task(self._consume(), name="worker-consume"),
            asyncio.create_task(self._every(self._reap_interval, self._reap), name="worker-reap"),
            asyncio.create_task(
                self._every(self._cleanup_interval, self._cleanup), name="worker-cleanup"
            ),
        ]

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Take no new job; wait up to ``grace_seconds`` for the jobs in hand.

        A job still running then is cancelled: its file is released (PENDING,
        the attempt refunded) and its message given back to the broker.
        """
        await _cancelled(self._loops)
        if self._in_hand:
            _done, pending = await asyncio.wait(self._in_hand, timeout=grace_seconds)
            await _cancelled(pending)

    async def _recover(self, *, sole_worker: bool) -> None:
        count = await recovery.reap(
            self._repo,
            self._broker,
            now=utc_now(),
            settings=self._settings,
            assume_orphaned=sole_worker,
        )
        if count:
            _log.info("recovered %d files left by an earlier run", count)

    async def _consume(self) -> None:
        while True:
            jobs = self._broker.jobs()
            try:
                while True:
                    # Room first, then the next job: a worker never holds more jobs than
                    # it was told to (one waiting too long would outlive its ack deadline).
                    await self._slots.acquire()
                    try:
                        delivery = await anext(jobs)
                    except BaseException:
                        self._slots.release()
                        raise
                    task = asyncio.create_task(self._handle(delivery))
                    self._in_hand.add(task)
                    task.add_done_callback(self._in_hand.discard)
            except DependencyUnavailable as exc:
                _log.warning("broker unavailable, retrying: %s", exc)
                await asyncio.sleep(1.0)

    async def _handle(self, delivery: Delivery) -> None:
        started = asyncio.get_running_loop().time()
        detail_id = delivery.job.instruction_detail_id
        try:
            handled = await processing.process_detail(
                self._repo,
                self._storage,
                self._broker,
                self._run,
                detail_id=detail_id,
                scratch=self._scratch,
                clock=utc_now,
                settings=self._settings,
                heartbeat=delivery.in_progress,
                instructions=self._instructions,
            )
        except NotFound:
            handled = Handled(Outcome.ACK)  # the file is gone (cleaned up): nothing to do
        except ImageCoreError as exc:
            _log.warning("job %s not processed, will retry: %s", detail_id, exc)
            handled = Handled(Outcome.RETRY)
        except asyncio.CancelledError:
            # Stopped past the grace period: the file was handed back, and so is its job.
            await processing.to_the_end(delivery.nak())
            raise
        finally:
            self._slots.release()
        if handled.outcome is Outcome.RETRY:
            await delivery.nak(delay=min(30.0, 2.0 * delivery.delivery_count))
        else:
            await delivery.ack()
            self.processed += 1
        if handled.final is not None:
            await self._finished(handled.final, asyncio.get_running_loop().time() - started)

    async def _finished(self, detail: InstructionDetail, elapsed: float) -> None:
        """Metrics for a file this worker finished, and the webhook if its instruction is done."""
        if self._observe is not None:
            self._observe(detail.product_key, detail.status.value, elapsed)
        if self._on_finished is None:
            return
        with contextlib.suppress(ImageCoreError):
            # Reading every file of the instruction after each one is only worth it
            # when somebody waits for the whole instruction.
            instruction = await self._instructions.get(detail.instruction_id)
            if instruction.notify_url:
                details = await services.finished_instruction(self._repo, instruction)
                if details is not None:
                    self._on_finished(instruction, details)

    async def _reap(self) -> None:
        await recovery.reap(self._repo, self._broker, now=utc_now(), settings=self._settings)

    async def _cleanup(self) -> None:
        cleaned, failed = await recovery.cleanup(
            self._repo, self._storage, self._broker, now=utc_now(), settings=self._settings
        )
        if cleaned or failed:
            _log.info("cleanup: %d files deleted, %d stale files failed", cleaned, failed)

    async def run_cleanup(self) -> tuple[int, int]:
        """One cleanup pass now (``imagecore cleanup``)."""
        return await recovery.cleanup(
            self._repo, self._storage, self._broker, now=utc_now(), settings=self._settings
        )

    async def _every(self, seconds: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._guarded(action(), action.__name__)

    @staticmethod
    async def _guarded(work: Awaitable[None], what: str) -> None:
        try:
            await work
        except ImageCoreError as exc:
            _log.warning("%s failed, next round will try again: %s", what, exc)
