"""Worker only: jobs already queued, then one worker drains them; first claim to last DONE.

The stack is opened exactly as ``imagecore serve`` and ``imagecore worker``
open it (`entrypoints.container.Runtime` from `entrypoints.config.Settings`),
the files are queued with the use case the API calls
(`imagecore.services.upload_file`), and the worker is the service's
`imagecore.worker.Worker` on its `adapters.vips.pool.ProcessPoolRunner`.
The time is read from the repository: the earliest ``started_at`` (the first
claim) to the latest ``finished_at`` (the last DONE).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs

from bench.probes import Watch
from bench.workloads import Step, Workload
from entrypoints.config import Settings
from entrypoints.container import Runtime
from imagecore import services
from imagecore.model import Status, utc_now
from imagecore.worker import Worker

__all__ = ["ServiceWorker"]

_USER = "bench"
_PER_INSTRUCTION = 50  # the products' max_files_per_instruction


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while block := source.read(256 * 1024):
            yield block


class ServiceWorker:
    """An opened stack whose worker runs ``processes`` pool children."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.processes = runtime.settings.concurrency
        # Jobs in hand beyond the pool slots: the service's WORKER_PREFETCH.
        self.prefetch = runtime.settings.prefetch

    @classmethod
    async def open(cls, settings: Settings, processes: int) -> ServiceWorker:
        """Open the stack the settings select, with a worker of ``processes`` children."""
        settings = attrs.evolve(settings, worker_concurrency=processes)
        return cls(await Runtime.open(settings))

    async def queue(self, step: Step, sources: list[Path]) -> list[str]:
        """Upload ``sources`` for ``step`` (as the API does); the new files' ids."""
        rt = self.runtime
        ids: list[str] = []
        for start in range(0, len(sources), _PER_INSTRUCTION):
            view = await services.create_instruction(
                rt.repository,
                user_id=_USER,
                product_ref=step.product,
                params=step.params,
                now=utc_now(),
            )
            for source in sources[start : start + _PER_INSTRUCTION]:
                detail = await services.upload_file(
                    rt.repository,
                    rt.storage,
                    rt.broker,
                    user_id=_USER,
                    instruction_id=view.instruction.id,
                    filename=source.name,
                    chunks=_chunks(source),
                    now=utc_now(),
                )
                ids.append(detail.id)
        return ids

    async def drain(self, ids: list[str]) -> None:
        """Start a worker, wait until every file in ``ids`` is final, stop it.

        Only the worker's work: the timings are read afterwards (`timings`), so that
        reading them is not counted as the worker's CPU time.
        """
        rt = self.runtime
        finished = asyncio.Event()
        seen = 0

        def observe(_product: str, status: str, _seconds: float) -> None:
            nonlocal seen
            if status in (Status.DONE.value, Status.FAILED.value):
                seen += 1
                if seen >= len(ids):
                    finished.set()

        worker = Worker(
            rt.repository,
            rt.storage,
            rt.broker,
            rt.runner,
            settings=rt.settings.pipeline,
            concurrency=rt.settings.concurrency + self.prefetch,
            reap_interval=rt.settings.reap_interval_seconds,
            cleanup_interval=rt.settings.cleanup_interval_seconds,
            scratch=rt.settings.data_dir / "scratch",
            observe=observe,
        )
        await worker.start(sole_worker=False)
        try:
            await asyncio.wait_for(finished.wait(), timeout=60 + 30 * len(ids))
        finally:
            await worker.stop()

    async def timings(self, ids: list[str]) -> dict[str, Any]:
        """First claim to last DONE of ``ids``, read from the repository; raises if any failed."""
        details = [await self.runtime.repository.get_detail(i) for i in ids]
        failed = [d for d in details if d.status is not Status.DONE]
        if failed:
            raise RuntimeError(
                f"{len(failed)} files did not finish DONE: {failed[0].error_message}"
            )
        first = min(d.started_at for d in details if d.started_at)
        last = max(d.finished_at for d in details if d.finished_at)
        return {
            "images": len(ids),
            "seconds": max((last - first).total_seconds(), 1e-3),
            "output_bytes": sum(d.output.size for d in details if d.output),
        }

    async def outputs(self, ids: list[str], folder: Path) -> list[Path]:
        """Copy the outputs of ``ids`` out of storage (the next step's inputs)."""
        folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - between measured drains
        paths = []
        for detail_id in ids:
            detail = await self.runtime.repository.get_detail(detail_id)
            assert detail.output is not None  # noqa: S101 - drain checked every file is DONE
            path = folder / f"{detail_id}.{detail.output.name.rsplit('.', 1)[-1]}"
            with path.open("wb") as out:
                async for chunk in self.runtime.storage.get(detail.output.key):
                    out.write(chunk)
            paths.append(path)
        return paths

    async def run(
        self,
        workload: Workload,
        sources: list[Path],
        scratch: Path,
        *,
        watches: list[Watch] | None = None,
    ) -> dict[str, Any]:
        """Every step of ``workload`` over ``sources``; the steps' worker times add up.

        Each drain is watched (CPU of this process and the pool children) into ``watches``.
        """
        seconds = 0.0
        result: dict[str, Any] = {}
        current = sources
        for index, step in enumerate(workload.steps):
            ids = await self.queue(step, current)
            with Watch(os.getpid(), interval=None) as watch:
                await self.drain(ids)
            result = await self.timings(ids)
            if watches is not None:
                watches.append(watch)
            seconds += result["seconds"]
            if index < len(workload.steps) - 1:
                current = await self.outputs(ids, scratch / f"{workload.key}-step{index}")
        return {
            "images": len(sources),
            "seconds": seconds,
            "images_per_second": len(sources) / seconds,
            "output_bytes": result["output_bytes"],
        }

    async def close(self) -> None:
        """Close the stack and stop the pool children."""
        await self.runtime.close()
