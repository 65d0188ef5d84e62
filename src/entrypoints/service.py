"""Long-running processes without HTTP: the standalone worker and one cleanup pass."""

from __future__ import annotations

import asyncio
import signal

from entrypoints.config import Settings
from entrypoints.container import Runtime
from imagecore.worker import Observer, Worker

__all__ = ["run_cleanup", "run_worker", "worker_for"]


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
        on_finished=runtime.webhooks.send,
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
        await worker.start(sole_worker=settings.broker_kind == "memory")
        await stop.wait()
    finally:
        await worker.stop(settings.shutdown_grace_seconds)
        await runtime.close()
    return 0


async def run_cleanup(settings: Settings) -> tuple[int, int]:
    """One cleanup pass over the configured repository and storage."""
    runtime = await Runtime.open(settings)
    try:
        return await worker_for(runtime).run_cleanup()
    finally:
        await runtime.close()
