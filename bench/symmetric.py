"""The symmetric peer workload: both services used as a client of each would use them.

Section 2 (`bench.stages.e2e`) asks thumbor for a file it reads from its own
disk, in one GET, while imagecore takes an upload, stores it, runs a job,
reports DONE on its event stream and serves a download. Here both take the
image over HTTP first: thumbor with its upload module and file storage
(``POST /image`` with the image as the body, its id read from ``Location``,
then ``GET`` of the derived size by that id: `bench.peer` with ``uploads``),
imagecore with upload -> DONE -> download (`bench.client.end_to_end`). Same
images, the same concurrency for both, the same client connection
(`bench.connection`); CPU is counted over each side's server processes
(`bench.probes.Watch`). The two subjects alternate within each round and
swap which goes first from one round to the next, so a slow spell of the
shared machine does not always fall on the same one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from bench.client import ApiClient, drive, end_to_end
from bench.connection import Connection
from bench.corpus import CORPUS
from bench.peer import THUMBOR_PATHS, thumbor
from bench.probes import Watch
from bench.stacks import start
from bench.workloads import WORKLOADS, Workload

__all__ = [
    "SUBJECTS",
    "SYMMETRIC_WORKLOADS",
    "round_order",
    "symmetric",
    "symmetric_summary",
    "upload_and_derive",
    "uploaded_id",
]

Log = Callable[[str], None]
SYMMETRIC_WORKLOADS: Final = ("W1", "W2")
SUBJECTS: Final = ("imagecore", "thumbor")
CONCURRENCY: Final = 4  # images in flight, as in section 2: two per worker process
_JPEG = {"Content-Type": "image/jpeg"}


def uploaded_id(location: str) -> str:
    """The image id in the ``Location`` thumbor answers an upload with.

    ``/image/<id>/<filename>``, possibly as an absolute URL.
    """
    parts = urlsplit(location).path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "image" or not parts[1]:
        raise ValueError(f"not the location of an upload: {location!r}")
    return parts[1]


def round_order(round_: int) -> tuple[str, ...]:
    """The subjects in the order round ``round_`` (from 0) runs them: swapped every round."""
    return SUBJECTS if round_ % 2 == 0 else SUBJECTS[::-1]


async def upload_and_derive(
    bases: Sequence[str], key: str, sources: Sequence[Path], concurrency: int
) -> dict[str, Any]:
    """thumbor: POST each source to ``/image``, then GET workload ``key`` of its id.

    ``concurrency`` loops, each on one kept connection to one server (spread
    evenly over ``bases``), each image's latency from the first byte of its
    upload to the last of the derived image. Bodies are read once and kept,
    as `bench.client.ApiClient` keeps its multipart bodies.
    """
    bodies = {path: path.read_bytes() for path in set(sources)}

    async def upload_then_get(connection: Connection, source: Path) -> bytes | None:
        status, _, headers = await connection.exchange("POST", "/image", bodies[source], _JPEG)
        if status != 201:
            return None
        path = THUMBOR_PATHS[key].format(name=uploaded_id(headers[b"location"].decode()))
        status, body, _ = await connection.exchange("GET", path)
        return body if status == 200 else None

    return await drive(bases, sources, concurrency, upload_then_get)


def _workload(key: str) -> Workload:
    return next(w for w in WORKLOADS if w.key == key)


def _measured(result: dict[str, Any], watch: Watch, client_since: float) -> dict[str, Any]:
    """A run's result with its servers' CPU (and the serve process's alone) per image."""
    cpu = watch.cpu_seconds()
    # Per image done: a side whose requests fail must not look cheaper for it.
    images = max(1, result["images"] - result.get("failed", 0))
    client = max(0.0, time.process_time() - client_since - watch.sampling_cpu)
    return {
        **result,
        "cpu_seconds": cpu,
        "images_per_cpu_second": images / cpu if cpu else 0.0,
        "cpu_ms_per_image": cpu * 1000 / images,
        "root_cpu_ms_per_image": watch.root_cpu_seconds() * 1000 / images,
        "client_cpu_ms_per_image": client * 1000 / images,
    }


def _median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r.get(key, 0.0) for r in results)


def symmetric_summary(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Medians per workload and subject, and imagecore / thumbor ratios of those medians.

    ``runs``: workload -> subject -> one result per round.
    """
    summary: dict[str, Any] = {}
    for key, subjects in runs.items():
        row: dict[str, Any] = {}
        for subject, results in subjects.items():
            row[subject] = {
                name: _median(results, name)
                for name in (
                    "images_per_second",
                    "images_per_cpu_second",
                    "cpu_ms_per_image",
                    "root_cpu_ms_per_image",
                    "client_cpu_ms_per_image",
                    "mean_output_bytes",
                )
            } | {
                q: statistics.median(r["latency"][q] for r in results)
                for q in ("p50", "p95", "p99")
            }
            row[subject]["failed"] = sum(r.get("failed", 0) for r in results)
        ours, peer = row.get("imagecore"), row.get("thumbor")
        if ours and peer and peer["images_per_second"] and peer["images_per_cpu_second"]:
            row["ratio_wall"] = ours["images_per_second"] / peer["images_per_second"]
            row["ratio_cpu"] = ours["images_per_cpu_second"] / peer["images_per_cpu_second"]
        summary[key] = row
    return summary


async def symmetric(args: argparse.Namespace, scratch: Path, log: Log) -> dict[str, Any]:
    """W1 and W2 through both services' upload paths, alternating, round by round."""
    serve = start("serve", scratch / "serve", {"WORKER_CONCURRENCY": "2"})
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in SYMMETRIC_WORKLOADS}
    empty = scratch / "no-files"  # thumbor's file loader finds nothing: uploads only
    empty.mkdir(parents=True, exist_ok=True)
    try:
        with thumbor(empty, scratch / "thumbor", 2, uploads=True) as peer:
            servers = set(peer.pids)
            async with ApiClient(serve.base, serve.token("bench")) as client:

                async def imagecore(key: str, sources: list[Path]) -> dict[str, Any]:
                    clock = time.process_time()
                    with Watch(serve.pid) as watch:
                        step = _workload(key).steps[0]
                        result = await end_to_end(client, step, sources, CONCURRENCY)
                    return _measured(result, watch, clock)

                async def peer_run(key: str, sources: list[Path]) -> dict[str, Any]:
                    clock = time.process_time()
                    with Watch(os.getpid(), include=lambda pid: pid in servers) as watch:
                        result = await upload_and_derive(peer.bases, key, sources, CONCURRENCY)
                    return _measured(result, watch, clock)

                drivers = {"imagecore": imagecore, "thumbor": peer_run}
                for key in SYMMETRIC_WORKLOADS:  # warm both, unmeasured
                    images = _workload(key).images(CORPUS)[:4]
                    for driver in drivers.values():
                        await driver(key, images)
                for round_ in range(args.rounds):
                    for key in SYMMETRIC_WORKLOADS:
                        log(f"symmetric round {round_ + 1}/{args.rounds} {key}")
                        workload = _workload(key)
                        sources = workload.sources(workload.run_count(quick=args.quick))
                        for subject in round_order(round_):
                            result = await drivers[subject](key, sources)
                            runs[key].setdefault(subject, []).append(result)
    finally:
        serve.stop()
    return {"concurrency": CONCURRENCY, "runs": runs, "summary": symmetric_summary(runs)}
