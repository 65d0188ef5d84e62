"""Worker memory: peak RSS of the pool children per workload, and drift over many images.

Peak: for each workload a fresh `adapters.process_pool.ProcessPoolRunner`
(the service's pool, two children) runs the workload's steps, and each
child's ``VmHWM`` (its lifetime peak resident set) is read before the pool
closes, so no peak between samples is missed and no earlier workload counts.

Drift: ``imagecore serve`` (API, worker, and its pool children) takes W1
jobs end to end for a long run while the whole process tree is sampled; the
resident sets in the last tenth of the run are compared with those just
after warm-up (the second tenth). A pool child's resident set swings with
the image in hand (about 56 MiB between files, 72 with one in flight, on the
photos), so the median of a window depends on how many samples caught a file
in flight: that swing, not growth, moved earlier runs by -9 % to +28 %. Drift
is therefore judged on each window's lowest resident set, what a process
holds between files, which is what a leak raises; the medians are reported
beside it. The pool recycles a child after 1000 files (``max_tasks_per_child``).

Known weakness: even between files a child's resident set is not one level.
One child read after every 100 of 1600 W1 files, each time idle, swung
between 46 and 62 MiB with no trend (39 and 55 with ``malloc_trim`` first,
so it is not glibc's free heap), and a busy child is rarely caught between
files at all. The child's verdict therefore moves between runs of the same
child code (-0.5 %, +0.8 % and +12.9 % in three full runs today); a steadier
measure would fit a trend to many idle readings over one child's life.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.process_pool import ProcessPoolRunner
from bench.client import ApiClient, end_to_end
from bench.probes import Watch, peak_rss
from bench.stacks import Served
from bench.workloads import Workload, service_request

__all__ = ["drift", "peak_per_workload"]


def _pids(runner: ProcessPoolRunner) -> list[int]:
    pids = [pid for pid in runner.child_pids() if pid is not None]
    if not pids:
        raise RuntimeError("the pool has no children to measure")
    return pids


async def peak_per_workload(
    workload: Workload, sources: list[Path], scratch: Path
) -> dict[str, Any]:
    """The highest child ``VmHWM`` while two children run ``workload`` over ``sources``."""
    runner = ProcessPoolRunner(2, 300.0)
    scratch.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before anything is measured
    try:
        current = sources
        for index, step in enumerate(workload.steps):
            outputs = [scratch / f"{workload.key}-{index}-{n}.out" for n in range(len(current))]
            await asyncio.gather(
                *(
                    runner(service_request(step, source, out))
                    for source, out in zip(current, outputs, strict=True)
                )
            )
            current = outputs
        peaks = [peak_rss(pid) for pid in _pids(runner)]
    finally:
        runner.close()
    return {"images": len(sources), "child_peak_rss": max(peaks, default=0)}


def _window(
    series: list[tuple[int, int]],
    start: float,
    end: float,
    reduce: Callable[[list[int]], float] = statistics.median,
) -> float:
    total = series[-1][0] if series else 0
    chosen = [v for done, v in series if start * total <= done <= end * total]
    return float(reduce(chosen)) if chosen else 0.0


def _growth(series: list[tuple[int, int]], prefix: str) -> dict[str, float]:
    """Second tenth against last tenth: lowest (the verdict) and median resident sets."""
    low_start, low_end = _window(series, 0.1, 0.2, min), _window(series, 0.9, 1.0, min)
    mid_start, mid_end = _window(series, 0.1, 0.2), _window(series, 0.9, 1.0)
    return {
        f"{prefix}_rss_start": low_start,
        f"{prefix}_rss_end": low_end,
        f"{prefix}_drift": low_end / low_start - 1 if low_start else 0.0,
        f"{prefix}_median_start": mid_start,
        f"{prefix}_median_end": mid_end,
        f"{prefix}_median_drift": mid_end / mid_start - 1 if mid_start else 0.0,
    }


async def drift(served: Served, workload: Workload, sources: list[Path]) -> dict[str, Any]:
    """Run ``sources`` through ``served`` end to end; resident sets against images done."""
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done = count

    parent: list[tuple[int, int]] = []
    children: list[tuple[int, int]] = []
    with Watch(served.pid, interval=0.5) as watch:
        async with ApiClient(served.base, served.token("drift")) as client:
            task = asyncio.create_task(
                end_to_end(client, workload.steps[0], sources, 4, on_done=progress)
            )
            seen = 0
            while not task.done():
                await asyncio.sleep(0.5)
                for sample in watch.samples[seen:]:
                    parent.append((done, sample.rss.get(served.pid, 0)))
                    others = [v for pid, v in sample.rss.items() if pid != served.pid]
                    children.append((done, max(others, default=0)))
                seen = len(watch.samples)
            result = await task
    return {
        "images": len(sources),
        "images_per_second": result["images_per_second"],
        **_growth(parent, "parent"),
        **_growth(children, "child"),
        "series": {"parent": parent, "children": children},
    }
