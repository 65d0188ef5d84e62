"""BENCHMARKS.md from one run's results, and the ratios printed at the end of a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.compress_speed import table
from bench.compression import VARIANTS
from bench.goals import floor_vs_thumbor, goals
from bench.history import kept_sections
from bench.plots import plot_all
from bench.probes import MIB
from bench.symmetric_report import symmetric_section
from bench.trend import DRIFT_WINDOWS
from bench.workloads import WORKLOADS

__all__ = ["headline", "write_report"]


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[object]], align: str = "") -> list[str]:
    marks = [("---:" if a == "r" else "---") for a in (align or "l" * len(header))]
    return [_row(*header), _row(*marks), *(_row(*r) for r in rows), ""]


def _size(value: float) -> str:
    if value >= MIB:
        return f"{value / MIB:.0f} MiB"
    return f"{value / 1024:.0f} KiB"


def headline(document: dict[str, Any]) -> str:
    """The goals, one line each, for the terminal."""
    lines = ["", "imagecore benchmarks: " + document["started"]]
    lines += [
        f"  [{g.verdict:>7}] {g.name}: {g.measured} (goal {g.target})" for g in goals(document)
    ]
    loads = ", ".join(f"{x['load'][0]:.1f}" for x in document.get("loads", []))
    lines += [f"  1-minute load average along the run: {loads} (2 cores)", ""]
    return "\n".join(lines)


def _environment(document: dict[str, Any]) -> list[str]:
    env = document["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    loads = "; ".join(
        f"{x['at']}: {x['load'][0]:.1f} / {x['load'][1]:.1f} / {x['load'][2]:.1f}"
        for x in document.get("loads", [])
    )
    settings = document["settings"]
    return [
        "## Environment",
        "",
        *_table(
            ["", ""],
            [
                ["CPU", f"{env['cpu']}, {env['cores']} cores, {env['memory_gib']} GiB"],
                ["kernel", env["kernel"]],
                ["Python", env["python"]],
                ["libvips", env["libvips"]],
                ["packages", packages],
                ["Go (old encoder)", document.get("compression", {}).get("go", "not run")],
                ["imagecore commit", env["git"]],
                ["load average (1/5/15 min) along the run", loads],
                [
                    "sample sizes",
                    (
                        f"rounds {settings['rounds']}, drift images {settings['drift_images']}, "
                        f"compression photos {settings['photos']}, quick {settings['quick']}"
                    ),
                ],
            ],
        ),
    ]


def _workloads(document: dict[str, Any]) -> list[str]:
    identical = document.get("floor_identical", {})
    rows = [
        [
            w.key,
            w.title,
            f"`{w.folder}/`",
            f"`{w.describe()}`",
            {True: "yes", False: "NO"}.get(identical.get(w.key), "-"),
        ]
        for w in WORKLOADS
    ]
    return [
        "## Workloads",
        "",
        (
            "The floor runs the same libvips operations with the same saver options as the "
            "processor, in a plain pyvips loop (`bench/workloads.py`). The last column checks it: "
            "floor and service must write byte-identical files for the first image."
        ),
        "",
        *_table(["", "workload", "images", "as our products", "floor = service bytes"], rows),
    ]


def _throughput(document: dict[str, Any], plots: dict[str, str]) -> list[str]:
    summary = document.get("throughput", {}).get("summary")
    if not summary:
        return []
    rows = []
    for key, row in summary.items():
        rows.append(
            [
                key,
                *(
                    f"{row[s]['images_per_second']:.1f} ({row[s]['images_per_cpu_second']:.1f})"
                    for s in ("floor1", "worker1", "floor2", "worker2")
                ),
                f"{row['ratio1_wall']:.2f} / {row['ratio1_cpu']:.2f}",
                f"{row['ratio2_wall']:.2f} / {row['ratio2_cpu']:.2f}",
                f"{row['scaling_worker']:.2f} ({row['scaling_floor']:.2f})",
            ]
        )
    out = [
        "## 1. Worker only against the pyvips floor (embedded stack)",
        "",
        (
            "Jobs are queued first (with the API's own use case), then the service's worker drains "
            "them: time from the first claim to the last DONE, read from the repository. "
            "Cells: images per second, wall clock (images per CPU-second of the processes doing "
            "the work: for the worker, its own process *and* its pool children, read at the "
            "start and the end of each run with no sampling thread beside the worker; children "
            "recycled meanwhile count from the kernel's record of reaped children). Ratios: "
            "worker / floor, wall clock / per CPU-second. Medians of the rounds, floor and "
            "worker alternating."
        ),
        "",
        *_table(
            [
                "",
                "floor, 1 process",
                "worker, 1",
                "floor, 2",
                "worker, 2",
                "ratio, 1 process",
                "ratio, 2",
                "2 vs 1: worker (floor)",
            ],
            rows,
            "lrrrrrrr",
        ),
    ]
    w1 = summary.get("W1", {})
    if "worker1" in w1:
        worker, floor = w1["worker1"], w1["floor1"]
        parent = worker["root_cpu_ms_per_image"]
        out += [
            (
                f"Where the worker's time goes (W1, 1 process): its pool child spends "
                f"{worker['cpu_ms_per_image'] - parent:.1f} ms of CPU per image (the floor: "
                f"{floor['cpu_ms_per_image']:.1f} ms), the worker's own process {parent:.1f} ms "
                "(claim, moving the output into storage, repository writes, events). With one "
                "process that work runs while the child waits."
            ),
            "",
        ]
    if "ratio2_prefetch1_wall" in w1:
        out += [
            (
                "The worker claims one job ahead per pool slot (`WORKER_PREFETCH`, by default the "
                "number of slots), so each child's next file is claimed, fetched and written "
                "into its pipe while it processes the current one. Measured in the same rounds "
                "with one job ahead in all (`WORKER_PREFETCH=1`), 2 processes: "
                f"{w1['ratio2_prefetch1_wall']:.2f}x wall clock / "
                f"{w1['ratio2_prefetch1_cpu']:.2f}x per CPU-second; with none "
                "(`WORKER_PREFETCH=0`): "
                f"{w1['ratio1_noprefetch_wall']:.2f}x / {w1['ratio1_noprefetch_cpu']:.2f}x with "
                f"1 process, {w1['ratio2_noprefetch_wall']:.2f}x / "
                f"{w1['ratio2_noprefetch_cpu']:.2f}x with 2."
            ),
            "",
        ]
    if "throughput" in plots:
        out += [f"![throughput](bench/plots/{plots['throughput']})", ""]
    return out


def _e2e(document: dict[str, Any], plots: dict[str, str]) -> list[str]:
    e2e = document.get("e2e", {})
    summary = e2e.get("summary")
    if not summary:
        return []
    rows = []
    for key, row in summary.items():
        floor, ours, peer = row["floor2"], row["imagecore"], row["thumbor"]
        rows.append(
            [
                key,
                f"{floor['images_per_second']:.1f}",
                f"{ours['images_per_second']:.1f} ({ours['images_per_cpu_second']:.1f})",
                f"{peer['images_per_second']:.1f} ({peer['images_per_cpu_second']:.1f})",
                f"{ours['images_per_second'] / floor['images_per_second']:.2f}",
                f"{ours['images_per_second'] / peer['images_per_second']:.2f}",
                " / ".join(f"{ours[q] * 1000:.0f}" for q in ("p50", "p95", "p99")),
                " / ".join(f"{peer[q] * 1000:.0f}" for q in ("p50", "p95", "p99")),
                f"{ours['mean_output_bytes'] / 1024:.1f} / {peer['mean_output_bytes'] / 1024:.1f}",
            ]
        )
    out = [
        "## 2. End to end on the embedded stack, and thumbor",
        "",
        (
            f"`imagecore serve` (2 worker processes) and two thumbor servers (one process each, "
            f"Pillow engine, file loader, no storage or result storage) on loopback, each side "
            f"driven with {e2e['concurrency']} images in flight (for thumbor, half on each "
            "server). imagecore: upload, wait for DONE on the event stream, download; thumbor: "
            "one GET. Images per second wall clock (per CPU-second of the servers' processes), "
            "latency in ms, mean output KiB."
        ),
        "",
        *_table(
            [
                "",
                "floor, 2 processes",
                "imagecore",
                "thumbor",
                "imagecore / floor",
                "imagecore / thumbor",
                "imagecore p50/p95/p99",
                "thumbor p50/p95/p99",
                "output KiB: ours / thumbor",
            ],
            rows,
            "lrrrrrrrr",
        ),
    ]
    w1 = summary.get("W1")
    if w1:
        ours, floor, peer = w1["imagecore"], w1["floor2"], w1["thumbor"]
        out += [
            (
                f"CPU per W1 image: the floor {floor['cpu_ms_per_image']:.1f} ms; imagecore "
                f"{ours['cpu_ms_per_image']:.1f} ms, of which "
                f"{ours['root_cpu_ms_per_image']:.1f} ms in the serve process (HTTP upload, "
                "storage, repository, job, events, download) and "
                f"the rest in its pool; thumbor {peer['cpu_ms_per_image']:.1f} ms for the whole "
                "request. The client, in the benchmark's own process on the same cores, is not "
                "counted; it is the same lean keep-alive HTTP/1.1 connection for both sides "
                f"(`bench/connection.py`), and spent {ours.get('client_cpu_ms_per_image', 0):.1f} "
                "ms per image driving imagecore (upload, event stream, download; each image's "
                f"multipart body is built once and kept) and "
                f"{peer.get('client_cpu_ms_per_image', 0):.1f} ms driving thumbor (one GET)."
            ),
            "",
        ]
    out += _w6_by_source(e2e.get("w6_by_source", {}))
    if "e2e" in plots:
        out += [f"![end to end](bench/plots/{plots['e2e']})", ""]
    return out


def _w6_by_source(by_source: dict[str, dict[str, Any]]) -> list[str]:
    if not by_source:
        return []
    rows = [
        [
            f"`{name}`",
            f"{r['floor2']['images_per_second']:.1f}",
            f"{r['imagecore']['images_per_second']:.1f}",
            f"{r['thumbor']['images_per_second']:.1f}",
            f"{r['imagecore']['images_per_second'] / r['thumbor']['images_per_second']:.2f}",
            f"{r['imagecore']['cpu_ms_per_image']:.0f} / {r['thumbor']['cpu_ms_per_image']:.0f}",
        ]
        for name, r in by_source.items()
    ]
    return [
        (
            "W6 takes its two 5120x2880 sources in turn, and they differ: one is a baseline "
            "JPEG, the other progressive. imagecore decodes a progressive JPEG resized by 8 "
            "or more from its DC scans (at 1/8 scale a pixel comes from a block's DC "
            "coefficient alone; `src/adapters/vips/jpeg_scans.py`, the same pixels bit for bit), "
            "while thumbor's Pillow decodes every scan. Each source alone, one run of each "
            "subject (images per second wall clock; CPU ms per image):"
        ),
        "",
        *_table(
            [
                "",
                "floor, 2 processes",
                "imagecore",
                "thumbor",
                "imagecore / thumbor",
                "CPU ms: imagecore / thumbor",
            ],
            rows,
            "lrrrrr",
        ),
        "",
    ]


def _quality(document: dict[str, Any]) -> list[str]:
    study = document.get("quality")
    if not study or "error" in study:
        return []
    rows = []
    for key, result in study.items():
        summary = result["summary"]
        rows.append(
            [
                key,
                len(result["rows"]),
                *(
                    f"{summary[s]['ssimulacra2']:.1f} / {summary[s]['bytes'] / 1024:.1f}"
                    for s in ("imagecore", "libvips_thumbnail", "thumbor")
                ),
            ]
        )
    return [
        "### What the outputs keep",
        "",
        (
            "Each source resized by imagecore's processor, by libvips' own `thumbnail` (which "
            "keeps a factor of two for its final Lanczos step; imagecore decodes a JPEG at the "
            "largest 1/2, 1/4 or 1/8 scale at or above the target instead) and by thumbor "
            "(Pillow's draft decode, then Lanczos), quality 80 for all, scored with SSIMULACRA2 "
            "against the full-resolution decode resized once with Lanczos. Mean SSIMULACRA2 "
            "(higher is better) / mean KiB."
        ),
        "",
        *_table(["", "images", "imagecore", "libvips thumbnail", "thumbor"], rows, "lrrrr"),
    ]


def _codecs(document: dict[str, Any]) -> list[str]:
    study = document.get("codecs")
    if not study or "error" in study:
        return []
    rows = []
    for key, result in study.items():
        mean = result["mean"]
        total = {lib: sum(mean[lib].values()) for lib in ("libvips", "pillow")}
        for lib, name in (("libvips", "libvips (the floor)"), ("pillow", "Pillow (thumbor)")):
            rows.append(
                [
                    f"{key} {name}",
                    *(f"{mean[lib][step]:.2f}" for step in ("decode", "resize", "encode")),
                    f"{total[lib]:.2f}",
                    f"{total['libvips'] / total['pillow']:.2f}x" if lib == "libvips" else "",
                ]
            )
    floor_vs_peer = _floor_vs_thumbor(document)
    return [
        "### The floor's own work against thumbor's engine",
        "",
        (
            "imagecore cannot be faster than its floor, plain pyvips"
            + (f" ({floor_vs_peer})" if floor_vs_peer else "")
            + ". Here each step of the work on each photo, in each library, in one process "
            "with one libvips thread (as each floor process has it): libvips' JPEG load at the "
            "floor's shrink, its Lanczos resize and its encoder (W1: progressive JPEG with the "
            "processor's options; W2: WebP at effort 4); Pillow as thumbor's engine runs it "
            "(`draft` to the target size, `resize(LANCZOS)`, `save` at quality 80: JPEG "
            "`optimize` and `progressive`, or WebP). CPU ms per image, means over the "
            f"{len(next(iter(study.values()))['rows'])} photos, each a median of repeats; each "
            "step's cost is the difference between cumulative timings."
        ),
        "",
        *_table(
            ["", "decode", "resize", "encode", "total", "libvips / Pillow"],
            rows,
            "lrrrrr",
        ),
    ]


def _floor_vs_thumbor(document: dict[str, Any]) -> str:
    summary = document.get("e2e", {}).get("summary", {})
    parts = [f"{k} {floor_vs_thumbor(summary[k]):.2f}x" for k in ("W1", "W2") if k in summary]
    if not parts:
        return ""
    return "against thumbor in the end-to-end rounds: " + ", ".join(parts)


def _production(document: dict[str, Any]) -> list[str]:
    production = document.get("production")
    if not production:
        return []
    stack = production["stack"]
    out = [
        "## 3. Production stack",
        "",
        (
            f"Repository {stack['repository']}, storage {stack['storage']}, broker "
            f"{stack['broker']} (only the adapters the container can select are used: "
            f"{', '.join(k for k, v in production['wired'].items() if v) or 'none'})."
        ),
        "",
    ]
    if "skipped" in production:
        return [*out, f"Not run: {production['skipped']}.", ""]
    e2e = production["e2e"]["summary"]
    worker = production.get("worker", {}).get("summary")
    if worker:
        out.append(
            f"- Worker only, W1, 2 processes (`imagecore worker` stopped with SIGSTOP while the "
            f"files are queued through the API, then resumed; first claim to last DONE): "
            f"{worker['images_per_second']:.1f} images/s ({worker['images_per_cpu_second']:.1f} "
            "per CPU-second of the worker process and its pool)."
        )
    else:
        out.append("- Worker only: not measured (no separate worker process without NATS).")
    embedded = document.get("e2e", {}).get("summary", {}).get("W1", {}).get("imagecore")
    against = (
        f" ({e2e['images_per_second'] / embedded['images_per_second']:.2f}x the embedded stack)"
        if embedded
        else ""
    )
    out += [
        (
            f"- End to end, W1 ({production['processes']}): {e2e['images_per_second']:.1f} images/s"
            f"{against}, "
            f"p50/p95/p99 {e2e['p50'] * 1000:.0f} / {e2e['p95'] * 1000:.0f} / "
            f"{e2e['p99'] * 1000:.0f} ms."
        ),
        "- Ingest: in section 4.",
        "",
    ]
    return out


def _ingest(document: dict[str, Any], plots: dict[str, str]) -> list[str]:
    rows = document.get("ingest", {}).get("rows")
    if not rows:
        return []
    production = {
        r["bytes"]: r for r in document.get("production", {}).get("ingest", {}).get("rows", [])
    }
    table = []
    for r in rows:
        p = production.get(r["bytes"])
        table.append(
            [
                _size(r["bytes"]),
                r["uploads"],
                f"{r['mb_per_second']:.1f}",
                f"{r['mb_per_cpu_second']:.0f}",
                f"{r['uploads_per_second']:.0f}",
                f"{r['peak_rss'] / MIB:.1f}",
                f"{p['mb_per_second']:.1f} / {p['peak_rss'] / MIB:.1f}" if p else "-",
            ]
        )
    out = [
        "## 4. API ingest",
        "",
        (
            "One multipart upload at a time into `images/metadata` instructions (a tiny JPEG "
            "padded "
            "with zeros, so only the bytes' path through the API counts). MB = 10^6 bytes. Per "
            "CPU-second counts only the API process (its CPU time has a 10 ms grain, so the small "
            "bodies' figure is rough). Peak RSS of the API process, sampled every 10 ms."
        ),
        "",
        *_table(
            [
                "body",
                "uploads",
                "MB/s",
                "MB per CPU-s",
                "uploads/s",
                "peak RSS, MiB",
                "production: MB/s / RSS MiB",
            ],
            table,
            "rrrrrrr",
        ),
    ]
    if "ingest" in plots:
        out += [f"![ingest](bench/plots/{plots['ingest']})", ""]
    return out


def _memory(document: dict[str, Any], plots: dict[str, str]) -> list[str]:
    memory = document.get("memory")
    if not memory:
        return []
    drift = memory["drift"]
    rows = [
        [k, v["images"], f"{v['child_peak_rss'] / MIB:.0f}"] for k, v in memory["peaks"].items()
    ]
    out = [
        "## 5. Worker memory",
        "",
        (
            "Peak: a fresh two-child pool (the service's `ProcessPoolRunner`) per workload; the "
            "highest `VmHWM` of its children."
        ),
        "",
        *_table(["", "images", "pool child peak RSS, MiB"], rows, "lrr"),
        (
            f"Drift of the serve process: {drift['images']} W1 images end to end through "
            f"`imagecore serve` ({drift['images_per_second']:.1f} images/s). Lowest RSS (what "
            f"it holds between requests; a leak raises it) in the second tenth of the run "
            f"against the last tenth: {drift['parent_rss_start'] / MIB:.0f} -> "
            f"{drift['parent_rss_end'] / MIB:.0f} MiB ({drift['parent_drift']:+.1%}; medians "
            f"{drift.get('parent_median_drift', 0):+.1%}). Its pool children, sampled in the "
            f"same run (recycled after 1000 files each): the largest "
            f"{drift['child_rss_start'] / MIB:.0f} -> {drift['child_rss_end'] / MIB:.0f} MiB "
            f"({drift['child_drift']:+.1%}; medians {drift.get('child_median_drift', 0):+.1%}), "
            "which is not the verdict: a child is rarely caught between files, and between "
            "files its resident set sits on one of a few levels 8 to 16 MiB apart."
        ),
        "",
    ]
    child = memory.get("child_drift")
    if child:
        out += [
            (
                f"Drift of a pool child (the verdict): one child of the service's pool runs "
                f"{child['images']} W1 files in turn, never recycled, its RSS read after "
                f"every file with nothing in flight. A Theil-Sen line through the lowest "
                f"reading of each of {child.get('windows', DRIFT_WINDOWS)} windows after the "
                f"first tenth (robust to the windows where the child sat a level higher): "
                f"{child['child_rss_start'] / MIB:.0f} -> "
                f"{child['child_rss_end'] / MIB:.0f} MiB ({child['child_drift']:+.1%}). "
                f"Medians of the second and the last tenth: "
                f"{child['child_median_start'] / MIB:.0f} -> "
                f"{child['child_median_end'] / MIB:.0f} MiB "
                f"({child['child_median_drift']:+.1%})."
            ),
            "",
        ]
    if "memory" in plots:
        out += [f"![memory](bench/plots/{plots['memory']})", ""]
    return out


def _compression(document: dict[str, Any], plots: dict[str, str]) -> list[str]:
    study = document.get("compression")
    if not study:
        return []
    rows = []
    for p in study["photos"]:
        go = p["go"]
        cells = [
            p["photo"],
            f"{go['bytes'] / 1024:.0f}",
            f"{go['ssimulacra2']:.1f} / {go['ssim']:.4f}",
        ]
        for variant in VARIANTS:
            v = p[variant]
            cells.append(
                f"{v['bytes'] / go['bytes']:.2f}x q{v.get('quality')} "
                f"({v['ssimulacra2']:.1f} / {v['ssim']:.4f})"
            )
        rows.append(cells)
    summary = study["summary"]
    rows.append(
        [
            "**geometric mean** (max)",
            "",
            "",
            *(
                f"**{summary[v]['geomean_ratio']:.2f}x** ({summary[v]['max_ratio']:.2f}x)"
                for v in VARIANTS
            ),
        ]
    )
    rows.append(
        [
            "every photo >= Go on SSIMULACRA2 / on both",
            "",
            "",
            *(
                f"{'yes' if summary[v]['all_s2_at_least'] else 'no'} / "
                f"{'yes' if summary[v]['all_at_least_as_good'] else 'no'}"
                for v in VARIANTS
            ),
        ]
    )
    rows.append(
        [
            "mean seconds per photo",
            "",
            "",
            *(f"{summary[v]['mean_seconds']:.1f}" for v in VARIANTS),
        ]
    )
    out = [
        "## 6. Compression (W5) against the old service's encoder",
        "",
        (
            f"The old encoder: Go's `image/jpeg` at quality {study['go_quality']} after "
            "`image.Decode` (`bench/goencoder`). Scores against the original photo: SSIMULACRA2 "
            "(the `ssimulacra2` package, 100 = identical) / SSIM (the processor's measure, "
            "`adapters/vips/ssim.py`). Each cell: bytes relative to Go, the quality used, "
            "(SSIMULACRA2 / SSIM). Columns: `images/compress` with its defaults; "
            "`images/compress target_ssim=<Go's SSIM>` (raised until SSIMULACRA2 also reaches "
            "Go's); `images/compress quality=<lowest reaching Go's SSIMULACRA2>`; `images/convert` "
            "to WebP, then AVIF, first at the lowest quality reaching Go on both scores, then at "
            "the lowest reaching Go's SSIMULACRA2 (SSIM reported, not required)."
        ),
        "",
        *_table(
            [
                "photo",
                "Go KiB",
                "Go scores",
                "compress, defaults",
                "compress, SSIM target from Go",
                "compress, quality matched on SSIMULACRA2",
                "WebP, both scores",
                "WebP, SSIMULACRA2",
                "AVIF, both scores",
                "AVIF, SSIMULACRA2",
            ],
            rows,
            "lrrrrrrrrr",
        ),
    ]
    if "compression" in plots:
        out += [f"![compression](bench/plots/{plots['compression']})", ""]
    if speed := study.get("speed"):
        out += [
            "### compress against one max-effort encode",
            "",
            (
                "`bench/compress_speed.py` on the same photos, in the stage's process: the whole "
                "product (`VipsImageProcessor.process`) and one encode of the same decoded image "
                "with the settings of compress's final encode (trellis, optimised scans, quant "
                "table 3, at the quality and chroma compress chose), alternating round by round; "
                "CPU seconds (`time.process_time`), medians. `ssim` is what compress reported, "
                "`full SSIM` the whole output scored against the whole input here."
            ),
            "",
            table(speed, {}),
            "",
        ]
    return out


def _failures(document: dict[str, Any]) -> list[str]:
    failed = {
        name: value["error"]
        for name, value in document.items()
        if isinstance(value, dict) and "error" in value
    }
    if not failed:
        return []
    return [
        "## Stages that failed in this run",
        "",
        *(f"- `{name}`: {error}" for name, error in failed.items()),
        "",
    ]


def write_report(document: dict[str, Any], path: Path, plots_dir: Path) -> None:
    """Write BENCHMARKS.md and its plots."""
    plots = plot_all(document, plots_dir)
    relative = os.path.relpath(plots_dir, path.parent)
    goal_rows = [[g.name, g.target, g.measured, f"**{g.verdict}**"] for g in goals(document)]
    lines = [
        "# Benchmarks",
        "",
        (
            f"Written by `{document['command'].strip()}` (`make bench`) on {document['started']}, "
            f"in {document['seconds'] / 60:.0f} minutes; every number below comes from that one "
            "run, and every comparison is between subjects measured in the same rounds, "
            "alternating. Each stage runs in a fresh Python process. Raw results: "
            "`bench/results/*.json` (not committed). The machine is shared: read ratios, not "
            "absolute times, and see the load averages below."
        ),
        "",
        "## Goals",
        "",
        *_table(["goal", "target", "measured", "verdict"], goal_rows),
        *_environment(document),
        *_workloads(document),
        *_throughput(document, plots),
        *_e2e(document, plots),
        *_quality(document),
        *_codecs(document),
        *symmetric_section(document),
        *_production(document),
        *_ingest(document, plots),
        *_memory(document, plots),
        *_compression(document, plots),
        *_failures(document),
    ]
    text = "\n".join(lines).rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(path)  # written by `python -m bench.history[_production]`
    path.write_text(text.replace("](bench/plots/", f"]({relative}/") + kept)
