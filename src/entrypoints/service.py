"""Long-running processes without HTTP: the standalone worker and one cleanup pass."""

from __future__ import annotations

import asyncio
import functools
import signal

from entrypoints.config import Settings
from entrypoints.container import Runtime
from entrypoints.http.views import finished_webhook
from imagecore.model import Instruction, InstructionDetail
from imagecore.ports import Webhooks
from imagecore.worker import Observer, Worker

__all__ = ["run_cleanup", "run_worker", "worker_for"]


def _finished(
    webhooks: Webhooks, instruction: Instruction, details: list[InstructionDetail]
) -> None:
    """Send the instruction's webhook, if it asked for one."""
    if instruction.notify_url:
        delivery = f"{instruction.id}:{len(details)}"
        webhooks.send(instruction.notify_url, delivery, finished_webhook(instruction, details))


def worker_for(runtime: Runtime, observe: Observer | None = None) -> Worker:
    """A worker on the runtime's ports, with the settings' knobs."""
    settings = runtime.settings
    return Worker(
        runtime.repository,
        runtime.storage,
        runtime.broker,
        runtime.runner,
        settings=settings.pipeline,
        concurrency=settings.jobs_in_hand,
        reap_interval=settings.reap_interval_seconds,
        cleanup_interval=settings.cleanup_interval_seconds,
        scratch=settings.data_dir / "scratch",
        observe=observe,
        on_finished=functools.partial(_finished, runtime.webhooks),
    )


async def run_worker(settings: Settings, signals: tuple[signal.Signals, ...] = ()) -> int:
    """Run a worker until one of ``signals`` arrives, then stop gracefully."""
    runtime = await Runtime.open(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    worker = worker_for(runtime)
    try:
        await worker.start(sole_worker=settings.sole_worker)
        await stop.wait()
    finally:
        await worker.stop(settings.shutdown_grace_seconds)
        await runtime.close()
    return 0


async def run_cleanup(settings: Settings) -> tuple[int, int]:
    """One cleanup pass over the configured repository and storage.

    It takes over no file, so it runs beside a serving process on the same
    DATA_DIR (a cron job) without its lock.
    """
    runtime = await Runtime.open(settings, owner=False)
    try:
        return await worker_for(runtime).run_cleanup()
    finally:
        await runtime.close()
