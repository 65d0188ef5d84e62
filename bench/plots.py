"""The figures of BENCHMARKS.md (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

from bench.probes import MIB

__all__ = ["plot_all"]

_DPI = 110


def _save(figure: Any, path: Path) -> None:  # noqa: ANN401 - a matplotlib Figure
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)


def _throughput(results: dict[str, Any], path: Path) -> bool:
    summary = results.get("throughput", {}).get("summary")
    if not summary:
        return False
    keys = list(summary)
    figure, axis = plt.subplots(figsize=(8, 3.6))
    series = [
        ("ratio1_cpu", "1 process, per CPU-second"),
        ("ratio1_wall", "1 process, wall clock"),
        ("ratio2_cpu", "2 processes, per CPU-second"),
        ("ratio2_wall", "2 processes, wall clock"),
    ]
    width = 0.2
    for index, (field, label) in enumerate(series):
        xs = [k + (index - 1.5) * width for k in range(len(keys))]
        axis.bar(xs, [summary[k][field] for k in keys], width, label=label)
    axis.axhline(0.9, color="black", linestyle="--", linewidth=1, label="goal for W1 (0.90x)")
    axis.axhline(1.0, color="grey", linewidth=0.5)
    axis.set_xticks(range(len(keys)), keys)
    axis.set_ylabel("worker / pyvips floor")
    axis.set_title("Worker only: throughput relative to the pyvips floor")
    axis.legend(fontsize=7, ncol=3, loc="lower center")
    _save(figure, path)
    return True


def _e2e(results: dict[str, Any], path: Path) -> bool:
    summary = results.get("e2e", {}).get("summary")
    if not summary:
        return False
    keys = list(summary)
    subjects = [("floor2", "pyvips floor"), ("imagecore", "imagecore"), ("thumbor", "thumbor")]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.27
    for index, (subject, label) in enumerate(subjects):
        xs = [k + (index - 1) * width for k in range(len(keys))]
        left.bar(xs, [summary[k][subject]["images_per_second"] for k in keys], width, label=label)
    left.set_xticks(range(len(keys)), keys)
    left.set_ylabel("images per second (2 processes)")
    left.set_title("End to end, embedded stack")
    left.legend(fontsize=8)
    for index, (subject, label) in enumerate(subjects[1:]):
        for q, marker in (("p50", "o"), ("p95", "s"), ("p99", "^")):
            right.scatter(
                [k + (index - 0.5) * 0.3 for k in range(len(keys))],
                [summary[k][subject][q] * 1000 for k in keys],
                marker=marker,
                color=f"C{index + 1}",
                label=f"{label} {q}",
            )
    right.set_xticks(range(len(keys)), keys)
    right.set_ylabel("latency, ms")
    right.set_title("Latency at 4 images in flight")
    right.legend(fontsize=7, ncol=2)
    _save(figure, path)
    return True


def _ingest(results: dict[str, Any], path: Path) -> bool:
    rows = results.get("ingest", {}).get("rows")
    if not rows:
        return False
    production = results.get("production", {}).get("ingest", {}).get("rows", [])
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    sizes = [r["bytes"] / MIB for r in rows]
    left.plot(sizes, [r["mb_per_cpu_second"] for r in rows], "o-", label="embedded, per CPU-s")
    left.plot(sizes, [r["mb_per_second"] for r in rows], "s--", label="embedded, wall clock")
    if production:
        p_sizes = [r["bytes"] / MIB for r in production]
        left.plot(p_sizes, [r["mb_per_second"] for r in production], "^:", label="production")
    left.axhline(300, color="black", linestyle="--", linewidth=1, label="goal 300 MB/s")
    left.set_xscale("log")
    left.set_xlabel("body, MiB")
    left.set_ylabel("MB/s")
    left.set_title("API ingest")
    left.legend(fontsize=7)
    right.plot(sizes, [r["peak_rss"] / MIB for r in rows], "o-", label="embedded")
    if production:
        right.plot(p_sizes, [r["peak_rss"] / MIB for r in production], "^:", label="production")
    right.set_xscale("log")
    right.set_ylim(bottom=0)
    right.set_xlabel("body, MiB")
    right.set_ylabel("API process peak RSS, MiB")
    right.set_title("Memory while ingesting")
    right.legend(fontsize=7)
    _save(figure, path)
    return True


def _memory(results: dict[str, Any], path: Path) -> bool:
    memory = results.get("memory")
    if not memory:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    peaks = memory["peaks"]
    keys = list(peaks)
    left.bar(keys, [peaks[k]["child_peak_rss"] / MIB for k in keys])
    left.axhline(256, color="black", linestyle="--", linewidth=1, label="goal 256 MiB")
    left.set_ylabel("pool child peak RSS, MiB")
    left.set_title("Peak per workload")
    left.legend(fontsize=8)
    series = memory["drift"]["series"]
    for name, label in (("parent", "imagecore serve"), ("children", "largest pool child")):
        points = series[name]
        right.plot([d for d, _ in points], [v / MIB for _, v in points], label=label)
    if "child_drift" in memory:
        points = memory["child_drift"]["series"]
        right.plot(
            [d for d, _ in points],
            [v / MIB for _, v in points],
            label="one pool child, between files",
            linewidth=0.6,
        )
    right.set_ylim(bottom=0)
    right.set_xlabel("images done (W1)")
    right.set_ylabel("RSS, MiB")
    right.set_title("Drift")
    right.legend(fontsize=8)
    _save(figure, path)
    return True


def _compression(results: dict[str, Any], path: Path) -> bool:
    study = results.get("compression")
    if not study:
        return False
    photos = study["photos"]
    variants = [
        ("default", "compress, defaults"),
        ("jpeg", "compress, SSIM target = Go's"),
        ("jpeg_s2", "compress, quality matched on SSIMULACRA2"),
        ("webp", "WebP, SSIM and SSIMULACRA2 >= Go"),
        ("webp_s2", "WebP, SSIMULACRA2 >= Go"),
        ("avif", "AVIF, SSIM and SSIMULACRA2 >= Go"),
        ("avif_s2", "AVIF, SSIMULACRA2 >= Go"),
    ]
    figure, axis = plt.subplots(figsize=(11, 3.8))
    width = 0.11
    for index, (variant, label) in enumerate(variants):
        xs = [k + (index - 3) * width for k in range(len(photos))]
        axis.bar(xs, [p[variant]["bytes"] / p["go"]["bytes"] for p in photos], width, label=label)
    axis.axhline(1.0, color="black", linewidth=1)
    axis.axhline(0.8, color="black", linestyle="--", linewidth=1)
    axis.axhline(0.6, color="grey", linestyle=":", linewidth=1)
    names = [p["photo"].split("-")[0] for p in photos]
    axis.set_xticks(range(len(photos)), names, rotation=20, fontsize=8)
    axis.set_ylabel("bytes / Go image/jpeg q60")
    axis.set_title("W5: output size against the old encoder (lines: 1.0, 0.80, 0.60)")
    axis.legend(fontsize=7, ncol=3)
    _save(figure, path)
    return True


def plot_all(results: dict[str, Any], folder: Path) -> dict[str, str]:
    """Write every figure the results allow; {name: file name}."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, draw in (
        ("throughput", _throughput),
        ("e2e", _e2e),
        ("ingest", _ingest),
        ("memory", _memory),
        ("compression", _compression),
    ):
        path = folder / f"{name}.png"
        if draw(results, path):
            made[name] = path.name
    return made
