"""The pyvips floor: each of N child processes loops over its share of the images.

The children are started (spawn, as the service's pool does) and warmed up
once, then reused for every measured run, so a run measures only image work.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.workloads import floor_run, floor_setup

__all__ = ["Floor"]


class Floor:
    """``processes`` warm children running `bench.workloads.floor_run`."""

    def __init__(self, processes: int, scratch: Path) -> None:
        self.processes = processes
        self._scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=floor_setup,
            initargs=(processes,),
        )

    @property
    def pids(self) -> set[int]:
        """The children's process ids."""
        return set((getattr(self._pool, "_processes", None) or {}).keys())

    def warm(self, key: str, images: list[Path]) -> None:
        """Start every child and run each image once, unmeasured."""
        self.run(key, images[: max(1, self.processes)] * self.processes)

    def run(self, key: str, sources: list[Path]) -> dict[str, float]:
        """Process ``sources``; the wall time from the first image to the last."""
        # Contiguous blocks, not every n-th image: the sources cycle through the workload's
        # images, and with two images and two processes every n-th would give each process
        # one image only (W6: one child with all the slow one).
        size = -(-len(sources) // self.processes)
        shares = [sources[i * size : (i + 1) * size] for i in range(self.processes)]
        folders = [self._scratch / f"p{i}" for i in range(self.processes)]
        for folder in folders:
            folder.mkdir(exist_ok=True)
        started = time.perf_counter()
        futures = [
            self._pool.submit(floor_run, key, share, folder)
            for share, folder in zip(shares, folders, strict=True)
            if share
        ]
        results = [future.result() for future in futures]
        seconds = time.perf_counter() - started
        return {
            "images": len(sources),
            "seconds": seconds,
            "images_per_second": len(sources) / seconds,
            "output_bytes": sum(size for _, size in results),
        }

    def close(self) -> None:
        """Stop the children."""
        self._pool.shutdown(wait=True, cancel_futures=True)
