"""The stages that run servers: end to end with the peer, ingest, production, memory, W5."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.client import ApiClient, end_to_end, requests_loop
from bench.corpus import CORPUS
from bench.floor import Floor
from bench.ingest import ingest
from bench.memory import child_drift, drift, peak_per_workload
from bench.peer import THUMBOR_PATHS, thumbor
from bench.probes import Watch
from bench.stacks import Served, production_env, start, wired
from bench.workloads import WORKLOADS, Workload

__all__ = ["compression", "e2e", "ingest_embedded", "memory", "production"]

Log = Callable[[str], None]
CONCURRENCY = 4  # images in flight: two per worker process
PEER_WORKLOADS = ("W1", "W2", "W6")


def _workload(key: str) -> Workload:
    return next(w for w in WORKLOADS if w.key == key)


#: W1 images per production round: FerretDB's scans make it about 20 times slower.
PRODUCTION_IMAGES = 96


def _per_cpu(result: dict[str, Any], watch: Watch, client: float = 0.0) -> dict[str, Any]:
    """CPU figures of a run; ``client``: CPU seconds this process spent driving it."""
    cpu = watch.cpu_seconds()
    return {
        **result,
        "client_cpu_ms_per_image": client * 1000 / result["images"],
        "cpu_seconds": cpu,
        "images_per_cpu_second": result["images"] / cpu,
        "root_cpu_ms_per_image": watch.root_cpu_seconds() * 1000 / result["images"],
        "cpu_ms_per_image": cpu * 1000 / result["images"],
    }


def _client_cpu(since: float, watch: Watch) -> float:
    """CPU seconds this process spent since ``since`` (by ``time.process_time``), less the
    watch's own sampling: what the benchmark's client cost."""
    return max(0.0, time.process_time() - since - watch.sampling_cpu)


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for subject, results in runs.items():
        out[subject] = {
            "images_per_second": statistics.median(r["images_per_second"] for r in results),
            "images_per_cpu_second": statistics.median(
                r.get("images_per_cpu_second", 0) for r in results
            ),
            "p50": statistics.median(r["latency"]["p50"] for r in results if "latency" in r)
            if any("latency" in r for r in results)
            else None,
            "p95": statistics.median(r["latency"]["p95"] for r in results if "latency" in r)
            if any("latency" in r for r in results)
            else None,
            "p99": statistics.median(r["latency"]["p99"] for r in results if "latency" in r)
            if any("latency" in r for r in results)
            else None,
            "mean_output_bytes": statistics.median(r.get("mean_output_bytes", 0) for r in results),
            "cpu_ms_per_image": statistics.median(r.get("cpu_ms_per_image", 0) for r in results),
            "root_cpu_ms_per_image": statistics.median(
                r.get("root_cpu_ms_per_image", 0) for r in results
            ),
            "client_cpu_ms_per_image": statistics.median(
                r.get("client_cpu_ms_per_image", 0) for r in results
            ),
        }
    return out


async def e2e(args: argparse.Namespace, scratch: Path, log: Log) -> dict[str, Any]:
    """Embedded stack end to end against the 2-process floor and thumbor, round by round.

    Then each W6 source alone, once: one is a baseline JPEG, the other a
    progressive one that imagecore decodes from its DC scans, and the
    workload's figure mixes the two.
    """
    serve = start("serve", scratch / "serve", {"WORKER_CONCURRENCY": "2"})
    floor = Floor(2, scratch / "floor")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {k: {} for k in PEER_WORKLOADS}
    by_source: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        with thumbor(CORPUS, scratch / "thumbor", 2) as peer:
            async with ApiClient(serve.base, serve.token("bench")) as client:
                side = _SideBySide(floor, serve, client, peer.bases, set(peer.pids))
                for key in PEER_WORKLOADS:
                    workload = _workload(key)
                    images = workload.images(CORPUS)
                    floor.warm(key, images)
                    await end_to_end(client, workload.steps[0], images[:4], CONCURRENCY)
                    await requests_loop(peer.bases, _peer_paths(key, images[:4]), CONCURRENCY)
                for round_ in range(args.rounds):
                    for key in PEER_WORKLOADS:
                        log(f"end to end round {round_ + 1}/{args.rounds} {key}")
                        workload = _workload(key)
                        sources = workload.sources(workload.run_count(quick=args.quick))
                        for subject, result in (await side.run(key, sources)).items():
                            runs[key].setdefault(subject, []).append(result)
                w6 = _workload("W6")
                for source in w6.images(CORPUS):
                    log(f"end to end W6, {source.name} alone")
                    sources = [source] * (w6.run_count(quick=args.quick) // 2)
                    by_source[source.name] = await side.run("W6", sources)
    finally:
        floor.close()
        serve.stop()
    return {
        "concurrency": CONCURRENCY,
        "runs": runs,
        "summary": {key: _summary(subjects) for key, subjects in runs.items()},
        "w6_by_source": {
            name: _summary({k: [v] for k, v in r.items()}) for name, r in by_source.items()
        },
    }


class _SideBySide:
    """The floor, imagecore and thumbor, one after another on the same sources."""

    def __init__(
        self,
        floor: Floor,
        serve: Served,
        client: ApiClient,
        bases: list[str],
        peer_pids: set[int],
    ) -> None:
        self._floor = floor
        self._serve = serve
        self._client = client
        self._bases = bases
        self._peer_pids = peer_pids

    async def run(self, key: str, sources: list[Path]) -> dict[str, dict[str, Any]]:
        """One run of each subject over ``sources``: "floor2", "imagecore", "thumbor"."""
        pids = self._floor.pids
        with Watch(os.getpid(), include=lambda pid, p=pids: pid in p) as watch:
            result = self._floor.run(key, sources)
        out = {"floor2": _per_cpu(result, watch)}
        clock = time.process_time()
        with Watch(self._serve.pid) as watch:
            result = await end_to_end(self._client, _workload(key).steps[0], sources, CONCURRENCY)
        out["imagecore"] = _per_cpu(result, watch, _client_cpu(clock, watch))
        servers = self._peer_pids
        clock = time.process_time()
        with Watch(os.getpid(), include=lambda pid, p=servers: pid in p) as watch:
            result = await requests_loop(self._bases, _peer_paths(key, sources), CONCURRENCY)
        out["thumbor"] = _per_cpu(result, watch, _client_cpu(clock, watch))
        return out


def _peer_paths(key: str, sources: list[Path]) -> list[str]:
    return [THUMBOR_PATHS[key].format(name=s.relative_to(CORPUS).as_posix()) for s in sources]


async def ingest_embedded(args: argparse.Namespace, scratch: Path, log: Log) -> dict[str, Any]:
    """Ingest on ``imagecore serve`` (SQLite and the filesystem)."""
    log("ingest, embedded stack")
    serve = start("serve", scratch / "serve", {"WORKER_CONCURRENCY": "1"})
    try:
        return {"rows": await ingest(serve, scratch / "bodies", quick=args.quick)}
    finally:
        serve.stop()


def _stack_label(flags: dict[str, bool]) -> dict[str, str]:
    return {
        "repository": "MongoDB (FerretDB)" if flags["mongo"] else "SQLite",
        "storage": "S3 (SeaweedFS)" if flags["s3"] else "filesystem",
        "broker": "NATS JetStream" if flags["nats"] else "in-process",
    }


async def production(args: argparse.Namespace, scratch: Path, log: Log) -> dict[str, Any]:
    """Worker only, end to end and ingest on the production servers the container offers."""
    flags = wired()
    result: dict[str, Any] = {"wired": flags, "stack": _stack_label(flags)}
    if not any(flags.values()):
        result["skipped"] = "the container offers no production adapter yet"
        return result
    log(f"production servers: {result['stack']}")
    w1 = _workload("W1")
    with (
        production_env(scratch / "servers") as (env, _names),
        _production_service(scratch / "service", env, nats=flags["nats"]) as (api, worker),
    ):
        result["processes"] = (
            "imagecore api + imagecore worker"
            if worker
            else "imagecore serve (no NATS broker in the container: API and worker in one process)"
        )
        async with ApiClient(api.base, api.token("bench")) as client:
            await end_to_end(client, w1.steps[0], w1.images(CORPUS)[:4], CONCURRENCY)
            worker_runs, e2e_runs = [], []
            for round_ in range(args.rounds):
                log(f"production round {round_ + 1}/{args.rounds}")
                sources = w1.sources(w1.quick_count if args.quick else PRODUCTION_IMAGES)
                if worker is not None:
                    worker_runs.append(await _paused_worker(client, worker, w1, sources))
                e2e_runs.append(await end_to_end(client, w1.steps[0], sources, CONCURRENCY))
        if worker_runs:
            result["worker"] = {
                "runs": worker_runs,
                "summary": _summary({"production": worker_runs})["production"],
            }
        result["e2e"] = {
            "runs": e2e_runs,
            "summary": _summary({"imagecore": e2e_runs})["imagecore"],
        }
        log("production ingest")
        result["ingest"] = {"rows": await ingest(api, scratch / "bodies", quick=args.quick)}
    return result


async def _paused_worker(
    client: ApiClient, worker: Served, workload: Workload, sources: list[Path]
) -> dict[str, Any]:
    """Queue ``sources`` while the worker process is stopped (SIGSTOP), then let it drain them."""
    instruction = ""
    ids: list[tuple[str, str]] = []
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        for index, source in enumerate(sources):
            if index % 50 == 0:
                instruction = await client.instruction(workload.steps[0])
            ids.append((instruction, await client.upload(instruction, source)))
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    with Watch(worker.pid) as watch:
        statuses = [await client.finished(detail) for _, detail in ids]
    details = [await client.detail(i, d) for i, d in ids]
    first = min(datetime.fromisoformat(d["started_at"]) for d in details)
    last = max(datetime.fromisoformat(d["finished_at"]) for d in details)
    seconds = max((last - first).total_seconds(), 1e-3)
    return {
        "images": len(sources),
        "failed": sum(s != "DONE" for s in statuses),
        "seconds": seconds,
        "images_per_second": len(sources) / seconds,
        "cpu_seconds": watch.cpu_seconds(),
        "images_per_cpu_second": len(sources) / max(watch.cpu_seconds(), 1e-3),
    }


@contextlib.contextmanager
def _production_service(
    folder: Path, env: dict[str, str], *, nats: bool
) -> Iterator[tuple[Served, Served | None]]:
    env = {**env, "WORKER_CONCURRENCY": "2"}
    if not nats:
        served = start("serve", folder, env)
        try:
            yield served, None
        finally:
            served.stop()
        return
    api = start("api", folder, env)
    worker = start("worker", folder, env)
    try:
        yield api, worker
    finally:
        worker.stop()
        api.stop()


async def memory(args: argparse.Namespace, scratch: Path, log: Log) -> dict[str, Any]:
    """Peak child RSS per workload, then drift over ``--drift-images`` W1 images."""
    peaks = {}
    for workload in WORKLOADS:
        log(f"memory peak {workload.key}")
        count = 2 if workload.key == "W5" else (4 if args.quick else 16)
        peaks[workload.key] = await peak_per_workload(
            workload, workload.sources(count), scratch / workload.key
        )
    log(f"memory drift over {args.drift_images} images")
    serve: Served = start("serve", scratch / "drift", {"WORKER_CONCURRENCY": "2"})
    w1 = _workload("W1")
    try:
        drifted = await drift(serve, w1, w1.sources(args.drift_images))
    finally:
        serve.stop()
    log(f"memory drift of one pool child over {args.drift_images} images")
    child = await child_drift(w1, w1.sources(args.drift_images), scratch / "child-drift")
    return {"peaks": peaks, "drift": drifted, "child_drift": child}


def compression(args: argparse.Namespace, scratch: Path, log: Log) -> dict[str, Any]:
    """W5 against the old Go encoder."""
    from bench.compression import build_go_encoder, compression_study  # noqa: PLC0415

    binary = scratch / "goencoder"
    go_version = build_go_encoder(Path(__file__).resolve().parent / "goencoder", binary)
    photos = sorted((CORPUS / "photos").glob("*.jpg"))[: args.photos]
    log(f"compression study on {len(photos)} photos ({go_version})")
    study = compression_study(photos, binary, scratch)
    log(f"compress against one max-effort encode on {len(photos)} photos")
    return {"go": go_version, **study, "speed": compress_speed(photos, scratch, args.rounds)}


def compress_speed(photos: list[Path], scratch: Path, rounds: int) -> list[dict[str, Any]]:
    """``images/compress`` against one max-effort encode of each photo (`bench.compress_speed`)."""
    from adapters.vips.processor import configure_vips  # noqa: PLC0415
    from bench.compress_speed import measure  # noqa: PLC0415

    configure_vips()
    folder = scratch / "compress-speed"
    folder.mkdir(parents=True, exist_ok=True)
    return [measure(photo, folder, rounds) for photo in photos]
