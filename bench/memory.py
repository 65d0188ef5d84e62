"""Worker memory: peak RSS of the pool children per workload, and drift over many images.

Peak: for each workload a fresh `adapters.vips.pool.ProcessPoolRunner`
(the service's pool, two children) runs the workload's steps, and each
child's ``VmHWM`` (its lifetime peak resident set) is read before the pool
closes, so no peak between samples is missed and no earlier workload counts.

Drift, the serve process: ``imagecore serve`` (API, worker, and its pool
children) takes W1 jobs end to end for a long run while the whole process
tree is sampled; the lowest resident set in the last tenth of the run is
compared with the lowest just after warm-up (the second tenth), the level
a process holds between requests, which is what a leak raises. The medians
are reported beside it, and the children's figures from this run too.

Drift, a pool child: the children's samples from that run cannot judge them.
A child's resident set swings with the image in hand (about 56 MiB between
files, 72 with one in flight), and even between files it is not one level:
read after every 100 of 1600 W1 files it swung between 46 and 62 MiB with no
trend. ``/proc/PID/smaps`` puts the steps in the malloc heaps, yet
``malloc_trim`` first did not remove them (39 and 55 MiB), nor did a
``gc.collect()`` after every file; and a busy child is rarely caught between
files. Judged on the lowest sample of that run's children per window, drift
came out at -0.5 %, +0.8 % and +12.9 % in three full runs of the same child
code. So the verdict comes from one child of the service's pool
(``ProcessPoolRunner(1)``) that runs every file of the run in turn and is
never recycled: its resident set is read after every file, with nothing in
flight. Even then the lowest level can stay away for hundreds of files (in
one run of 3000, the child held 68 MiB or more from file 600 to 1350, 44 MiB
before and after), so two windows compared alone would judge that episode as
growth. The readings after the first tenth are cut into 18 windows, and
`bench.trend` fits a line through the lowest reading of each by Theil-Sen
(the median of the slopes between every two windows, which a few windows off
the lower level do not move); its value at the last window is compared with
its value at the first. On that run's readings with a leak added, the
measure finds +10.8 % for 2000 bytes per file (+11 % true), and +6.5 % with
the 750-file episode moved to the end.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.vips.pool import ProcessPoolRunner
from bench.client import ApiClient, end_to_end
from bench.probes import Watch, peak_rss, resident_set
from bench.stacks import Served
from bench.trend import DRIFT_WINDOWS, drift_line
from bench.workloads import Workload, service_request

__all__ = ["child_drift", "drift", "peak_per_workload"]


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


async def child_drift(workload: Workload, sources: list[Path], scratch: Path) -> dict[str, Any]:
    """One pool child, never recycled, runs ``sources`` in turn; its idle RSS after each."""
    runner = ProcessPoolRunner(1, 300.0, max_tasks_per_child=len(sources) + 1)
    scratch.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before anything is measured
    series: list[tuple[int, int]] = []
    try:
        for index, source in enumerate(sources):
            out = scratch / f"drift-{index % 4}.out"
            await runner(service_request(workload.steps[0], source, out))
            series.append((index + 1, resident_set(_pids(runner)[0])))
    finally:
        runner.close()
    start, end = drift_line(series)
    return {
        "images": len(sources),
        **_medians(series, "child"),
        "child_rss_start": start,
        "child_rss_end": end,
        "child_drift": end / start - 1 if start else 0.0,
        "windows": DRIFT_WINDOWS,
        "series": series,
    }


def _window(
    series: list[tuple[int, int]],
    start: float,
    end: float,
    reduce: Callable[[list[int]], float] = statistics.median,
) -> float:
    total = series[-1][0] if series else 0
    chosen = [v for done, v in series if start * total <= done <= end * total]
    return float(reduce(chosen)) if chosen else 0.0


def _medians(series: list[tuple[int, int]], prefix: str) -> dict[str, float]:
    """Median resident sets of the second tenth and the last tenth."""
    start, end = _window(series, 0.1, 0.2), _window(series, 0.9, 1.0)
    return {
        f"{prefix}_median_start": start,
        f"{prefix}_median_end": end,
        f"{prefix}_median_drift": end / start - 1 if start else 0.0,
    }


def _growth(series: list[tuple[int, int]], prefix: str) -> dict[str, float]:
    """Second tenth against last tenth: lowest (the verdict) and median resident sets."""
    start, end = _window(series, 0.1, 0.2, min), _window(series, 0.9, 1.0, min)
    return {
        f"{prefix}_rss_start": start,
        f"{prefix}_rss_end": end,
        f"{prefix}_drift": end / start - 1 if start else 0.0,
        **_medians(series, prefix),
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
