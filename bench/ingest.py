"""API ingest: multipart uploads streamed to storage, from 1 KiB to 200 MiB per body.

Each body is a tiny valid JPEG padded with zeros to its size (the API sniffs
the first bytes; the rest is only counted and stored), uploaded as one
``file`` part to a fresh ``images/metadata`` instruction, one upload at a
time; the next starts only once the worker has finished the previous file, so
the API process is measured alone. Each size starts with the page cache
written out (``os.sync``); see `bench.cli` for what else the stage needs.
Throughput is wall-clock MB/s (1 MB = 10^6 bytes) and MB per CPU-second of the
API process ("per core", which other load on the machine does not change);
memory is the API process's resident set, sampled every 10 ms during the
upload.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import pyvips

from bench.client import ApiClient
from bench.probes import MIB, Watch
from bench.stacks import Served
from bench.workloads import Step

__all__ = ["SIZES", "ingest"]

#: (body bytes, uploads) for the full run; ``--quick`` takes one of each.
SIZES = (
    (1024, 40),
    (64 * 1024, 40),
    (MIB, 20),
    (16 * MIB, 6),
    (64 * MIB, 3),
    (200 * MIB - 64 * 1024, 2),  # the per-file limit is 200 MiB, multipart headers aside
)
_BLOCK = 8 * MIB


def _body(path: Path, size: int) -> None:
    head = bytes(pyvips.Image.black(8, 8).jpegsave_buffer())
    with path.open("wb") as out:
        out.write(head)
        left = size - len(head)
        zeros = bytes(_BLOCK)
        while left > 0:
            out.write(zeros[: min(left, _BLOCK)])
            left -= _BLOCK


async def ingest(served: Served, folder: Path, *, quick: bool) -> list[dict[str, Any]]:
    """Upload each size several times; per size: MB/s, MB per CPU-second, peak RSS."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, before anything is measured
    rows = []
    async with ApiClient(served.base, served.token("ingest")) as client:
        for size, count in SIZES:
            path = folder / f"body-{size}.jpg"
            _body(path, size)
            os.sync()
            runs = []
            for _ in range(1 if quick else count):
                instruction = await client.instruction(Step("images/metadata", {}))
                with Watch(
                    served.pid,
                    interval=0.01,
                    descendants=False,
                    include=lambda pid: pid == served.pid,
                ) as watch:
                    started = time.perf_counter()
                    detail_id = await client.upload(instruction, path)
                    seconds = time.perf_counter() - started
                await client.finished(detail_id)
                runs.append(
                    {
                        "seconds": seconds,
                        "cpu": watch.cpu_seconds(),
                        "rss": max(s.rss.get(served.pid, 0) for s in watch.samples),
                        "hwm": watch.samples[-1].hwm.get(served.pid, 0),
                    }
                )
            path.unlink()
            total_cpu = sum(r["cpu"] for r in runs)
            rows.append(
                {
                    "bytes": size,
                    "uploads": len(runs),
                    "mb_per_second": statistics.median(size / 1e6 / r["seconds"] for r in runs),
                    "mb_per_cpu_second": size * len(runs) / 1e6 / total_cpu if total_cpu else 0,
                    "uploads_per_second": statistics.median(1 / r["seconds"] for r in runs),
                    "peak_rss": max(r["rss"] for r in runs),
                    "hwm": max(r["hwm"] for r in runs),
                }
            )
    return rows
