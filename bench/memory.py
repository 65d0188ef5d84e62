"""Worker memory: peak RSS of the pool children per workload, and drift over many images.

Peak: for each workload a fresh `adapters.process_pool.ProcessPoolRunner`
(the service's pool, two children) runs the workload's steps, and each
child's ``VmHWM`` (its lifetime peak resident set) is read before the pool
closes, so no peak between samples is missed and no earlier workload counts.

Drift: ``imagecore serve`` (API, worker, and its pool children) takes W1
jobs end to end for a long run while the whole process tree is sampled; the
resident sets in the last tenth of the run are compared with those just
after warm-up (the second tenth). The pool recycles a child after 1000 files
(``max_tasks_per_child``), so over a few thousand images a child's is compared
at the same stage of its life only on average; the parent's is the service's
own.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

from adapters.process_pool import ProcessPoolRunner
from bench.client import ApiClient, end_to_end
from bench.probes import Watch, peak_rss
from bench.stacks import Served
from bench.workloads import Workload
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product

__all__ = ["drift", "peak_per_workload"]


def _pids(runner: ProcessPoolRunner) -> list[int]:
    pools = getattr(runner, "_slots", [])
    return [
        process.pid
        for pool in pools
        if pool is not None
        for process in (getattr(pool, "_processes", None) or {}).values()
    ]


async def peak_per_workload(
    workload: Workload, sources: list[Path], scratch: Path
) -> dict[str, Any]:
    """The highest child ``VmHWM`` while two children run ``workload`` over ``sources``."""
    runner = ProcessPoolRunner(2, 300.0)
    scratch.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before anything is measured
    try:
        current = sources
        for index, step in enumerate(workload.steps):
            product = find_product(step.product)
            params = product.validate(step.params)
            outputs = [scratch / f"{workload.key}-{index}-{n}.out" for n in range(len(current))]
            await asyncio.gather(
                *(
                    runner(
                        ProcessingRequest(
                            product.key,
                            params,
                            source,
                            out,
                            product.limits.max_pixels,
                            product.limits.max_frames,
                        )
                    )
                    for source, out in zip(current, outputs, strict=True)
                )
            )
            current = outputs
        peaks = [peak_rss(pid) for pid in _pids(runner)]
    finally:
        runner.close()
    return {"images": len(sources), "child_peak_rss": max(peaks, default=0)}


def _window(series: list[tuple[int, int]], start: float, end: float) -> float:
    total = series[-1][0] if series else 0
    chosen = [v for done, v in series if start * total <= done <= end * total]
    return statistics.median(chosen) if chosen else 0.0


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
    start_parent, end_parent = _window(parent, 0.1, 0.2), _window(parent, 0.9, 1.0)
    start_child, end_child = _window(children, 0.1, 0.2), _window(children, 0.9, 1.0)
    return {
        "images": len(sources),
        "images_per_second": result["images_per_second"],
        "parent_rss_start": start_parent,
        "parent_rss_end": end_parent,
        "parent_drift": end_parent / start_parent - 1 if start_parent else 0.0,
        "child_rss_start": start_child,
        "child_rss_end": end_child,
        "child_drift": end_child / start_child - 1 if start_child else 0.0,
        "series": {"parent": parent, "children": children},
    }
