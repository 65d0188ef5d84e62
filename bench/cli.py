"""``python -m bench``: every stage, side by side in one run, then BENCHMARKS.md and plots.

Stages (``--stages`` picks some): ``throughput`` (the pyvips floor against the
worker, 1 and 2 processes, every workload), ``production`` (the worker, end
to end and ingest on the production servers), ``e2e`` (embedded stack end
to end, with the floor and thumbor in the same rounds), ``symmetric`` (W1 and
W2 through thumbor's upload module and file storage against imagecore's
upload -> DONE -> download, `bench.symmetric`), ``quality`` (what
imagecore's and thumbor's outputs keep against a full-resolution reference), ``codecs``
(the floor's decode, resize and encode against Pillow's, thumbor's engine), ``ingest``,
``memory`` (peak per workload and drift), ``compression`` (W5 against Go).
Measured runs of different subjects are interleaved round by round, so slow
spells of a shared machine fall on all of them; ratios are of medians. Each
stage runs in a fresh Python process (``--one-stage``) and its files are
removed once it ends (unless ``--keep``), after which the next one starts with
everything written out (``os.sync``): no stage measures what an earlier one
left behind. On this virtual machine, 2.5 GB of other files held in the page
cache made the ingest stage cost twice the CPU per MB (302 against 559 MB per
CPU-second), and removing those files brought it back at once.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bench import environment
from bench.corpus import CORPUS
from bench.workloads import WORKLOADS, floor_matches_service
from entrypoints import loop

#: Result names of the W1 worker runs with fewer jobs claimed ahead than the default.
_PREFETCH_SUFFIX = {1: "_prefetch1", 0: "_noprefetch"}

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent
STAGES = (
    "throughput",
    "e2e",
    "symmetric",
    "quality",
    "codecs",
    "ingest",
    "production",
    "memory",
    "compression",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small samples, to try things out")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument(
        "--drift-images",
        type=int,
        help="images for the memory drift run (default 3000, quick 100)",
    )
    parser.add_argument(
        "--photos", type=int, help="photos in the compression study (default all 8, quick 2)"
    )
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs)")
    # Internal: how the run starts each stage in a process of its own.
    parser.add_argument("--one-stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out",
        type=Path,
        help="where BENCHMARKS.md goes (default: the repository's; quick or some stages only: "
        "bench/results/quick/ or bench/results/partial/)",
    )
    return parser


def _log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r.get(key, 0.0) for r in runs) if runs else 0.0


async def _stage_throughput(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from bench.floor import Floor  # noqa: PLC0415 - each stage loads what it needs
    from bench.probes import Watch  # noqa: PLC0415
    from bench.worker_stage import ServiceWorker  # noqa: PLC0415
    from entrypoints.config import Settings  # noqa: PLC0415

    floors = {n: Floor(n, scratch / f"floor{n}") for n in (1, 2)}
    services = {
        n: await ServiceWorker.open(Settings(data_dir=scratch / f"embedded{n}"), n) for n in (1, 2)
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {w.key: {} for w in WORKLOADS}
    try:
        for workload in WORKLOADS:
            images = workload.images(CORPUS)
            for n in (1, 2):
                floors[n].warm(workload.key, images)
                await services[n].run(workload, images[: 2 * n], scratch / "warm")
        for round_ in range(args.rounds):
            for workload in WORKLOADS:
                sources = workload.sources(workload.run_count(quick=args.quick))
                _log(f"throughput round {round_ + 1}/{args.rounds} {workload.key}")
                for n in (1, 2):
                    with Watch(os.getpid(), interval=None) as watch:
                        result = floors[n].run(workload.key, sources)
                    result["cpu_seconds"] = watch.cpu_seconds()
                    runs[workload.key].setdefault(f"floor{n}", []).append(result)
                    # W1 also runs with fewer jobs claimed ahead: WORKER_PREFETCH=1 (one in
                    # all, not one per slot) and 0 (none).
                    default = services[n].prefetch
                    fewer = (
                        [p for p in _PREFETCH_SUFFIX if p < default] if workload.key == "W1" else []
                    )
                    for prefetch in (default, *fewer):
                        services[n].prefetch = prefetch
                        watches: list[Watch] = []
                        result = await services[n].run(
                            workload, sources, scratch / "steps", watches=watches
                        )
                        result["cpu_seconds"] = sum(w.cpu_seconds() for w in watches)
                        result["root_cpu_ms_per_image"] = (
                            sum(w.root_cpu_seconds() for w in watches) * 1000 / len(sources)
                        )
                        subject = f"worker{n}" + (
                            "" if prefetch == default else _PREFETCH_SUFFIX[prefetch]
                        )
                        runs[workload.key].setdefault(subject, []).append(result)
                    services[n].prefetch = default
    finally:
        for floor in floors.values():
            floor.close()
        for service in services.values():
            await service.close()
    return {"runs": runs, "summary": _throughput_summary(runs)}


def _throughput_summary(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, subjects in runs.items():
        row: dict[str, Any] = {}
        for subject, results in subjects.items():
            row[subject] = {
                "images_per_second": _median(results, "images_per_second"),
                "images_per_cpu_second": statistics.median(
                    r["images"] / r["cpu_seconds"] for r in results if r["cpu_seconds"]
                ),
                "cpu_ms_per_image": statistics.median(
                    r["cpu_seconds"] * 1000 / r["images"] for r in results
                ),
                "root_cpu_ms_per_image": _median(results, "root_cpu_ms_per_image"),
            }
        for n in (1, 2):
            worker, floor = row[f"worker{n}"], row[f"floor{n}"]
            row[f"ratio{n}_wall"] = worker["images_per_second"] / floor["images_per_second"]
            row[f"ratio{n}_cpu"] = worker["images_per_cpu_second"] / floor["images_per_cpu_second"]
        for n, suffix in itertools.product((1, 2), _PREFETCH_SUFFIX.values()):
            fewer = row.get(f"worker{n}{suffix}")
            if fewer:
                floor = row[f"floor{n}"]
                row[f"ratio{n}{suffix}_wall"] = (
                    fewer["images_per_second"] / floor["images_per_second"]
                )
                row[f"ratio{n}{suffix}_cpu"] = (
                    fewer["images_per_cpu_second"] / floor["images_per_cpu_second"]
                )
        row["scaling_worker"] = (
            row["worker2"]["images_per_second"] / row["worker1"]["images_per_second"]
        )
        row["scaling_floor"] = (
            row["floor2"]["images_per_second"] / row["floor1"]["images_per_second"]
        )
        summary[key] = row
    return summary


def _load() -> dict[str, Any]:
    return {"at": time.strftime("%H:%M:%S"), "load": environment.load_average()}


async def _guarded(name: str, run: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A stage's results, or what went wrong: one broken stage does not lose the others."""
    try:
        return await run
    except Exception as exc:  # noqa: BLE001 - reported in BENCHMARKS.md instead
        _log(f"stage {name} failed: {exc!r}")
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


async def _compression(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from bench import stages  # noqa: PLC0415

    return await asyncio.to_thread(stages.compression, args, scratch, _log)


async def _quality(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from bench.quality import quality  # noqa: PLC0415

    return await asyncio.to_thread(quality, scratch, _log, limit=2 if args.quick else None)


async def _codecs(args: argparse.Namespace) -> dict[str, Any]:
    from bench.codecs import codecs  # noqa: PLC0415

    return await asyncio.to_thread(codecs, _log, limit=2 if args.quick else None)


async def _symmetric(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from bench.symmetric import symmetric  # noqa: PLC0415

    return await symmetric(args, scratch, _log)


async def _one_stage(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Run one stage here; the result's keys go into the run's document."""
    from bench import stages  # noqa: PLC0415

    results: dict[str, Any] = {}
    if name == "throughput":
        _log("checking that the floor writes the service's bytes")
        results["floor_identical"] = {
            w.key: floor_matches_service(w.key, w.images(CORPUS)[0], scratch)
            for w in WORKLOADS
            if w.key != "W5"
        } | {"W5": True}
    runs = {
        "throughput": lambda: _stage_throughput(args, scratch / "throughput"),
        "e2e": lambda: stages.e2e(args, scratch / "e2e", _log),
        "symmetric": lambda: _symmetric(args, scratch / "symmetric"),
        "quality": lambda: _quality(args, scratch / "quality"),
        "codecs": lambda: _codecs(args),
        "ingest": lambda: stages.ingest_embedded(args, scratch / "ingest", _log),
        "production": lambda: stages.production(args, scratch / "production", _log),
        "memory": lambda: stages.memory(args, scratch / "memory", _log),
        "compression": lambda: _compression(args, scratch / "compression"),
    }
    results[name] = await _guarded(name, runs[name]())
    return results


def _in_fresh_process(name: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Run one stage in a new ``python -m bench`` process and read back what it found.

    The stage works in a folder of its own, removed afterwards unless ``--keep``.
    """
    result = scratch / f"{name}.json"
    folder = scratch / name
    command = [
        sys.executable,
        "-m",
        "bench",
        "--one-stage",
        name,
        "--scratch",
        str(folder),
        "--result",
        str(result),
        "--rounds",
        str(args.rounds),
        "--drift-images",
        str(args.drift_images),
        "--photos",
        str(args.photos),
        *(["--quick"] if args.quick else []),
    ]
    finished = subprocess.run(command, check=False)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    if finished.returncode != 0 or not result.is_file():
        _log(f"stage {name} ended with exit status {finished.returncode}")
        return {name: {"error": f"the stage's process ended with status {finished.returncode}"}}
    found: dict[str, Any] = json.loads(result.read_text())
    return found


def _run_stages(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    chosen = set(args.stages.split(","))
    results: dict[str, Any] = {"loads": [_load()]}
    for name in STAGES:
        if name in chosen:
            os.sync()
            results |= _in_fresh_process(name, args, scratch)
            results["loads"].append(_load())
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write the JSON, BENCHMARKS.md and the plots; print the ratios."""
    args = _parser().parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.drift_images = args.drift_images or (100 if args.quick else 3000)
    args.photos = args.photos or (2 if args.quick else 8)
    if args.one_stage:
        if args.scratch is None or args.result is None:
            sys.stderr.write("bench: --one-stage needs --scratch and --result\n")
            return 2
        args.scratch.mkdir(parents=True, exist_ok=True)
        # The service's own loop: the worker stage runs the service's worker in this process.
        found = loop.run(_one_stage(args.one_stage, args, args.scratch))
        args.result.write_text(json.dumps(found, default=str))
        return 0
    if not (CORPUS / "photos").is_dir():
        sys.stderr.write(f"bench: the shared corpus is not at {CORPUS}\n")
        return 2
    results_dir = ROOT / "results"
    # Only a full run of every stage replaces the committed BENCHMARKS.md and plots.
    partial = set(args.stages.split(",")) != set(STAGES)
    kind = "quick" if args.quick else "partial" if partial else None
    out_dir = results_dir / kind if kind and args.out is None else None
    report_path = args.out or (out_dir / "BENCHMARKS.md" if out_dir else Path("BENCHMARKS.md"))
    plots_dir = out_dir / "plots" if out_dir else ROOT / "plots"
    started = time.time()
    document: dict[str, Any] = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "drift_images": args.drift_images,
            "photos": args.photos,
            "stages": args.stages,
        },
        "environment": environment.describe(),
    }
    scratch = Path(tempfile.mkdtemp(prefix="imagecore-bench-"))
    try:
        document |= _run_stages(args, scratch)
    finally:
        if args.keep:
            _log(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    document["seconds"] = time.time() - started
    document["environment"]["load_average_end"] = environment.load_average()
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw = results_dir / f"results-{stamp}{'-quick' if args.quick else ''}.json"
    raw.write_text(json.dumps(document, indent=1, default=str))
    from bench.report import headline, write_report  # noqa: PLC0415 - matplotlib loads last

    write_report(document, report_path, plots_dir)
    sys.stdout.write(headline(document))
    _log(f"wrote {raw}, {report_path} and {plots_dir}/ in {document['seconds']:.0f} s")
    return 0
