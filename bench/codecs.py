"""Where the floor's own time goes against thumbor's engine: decode, resize, encode.

The floor (plain pyvips, `bench.workloads`) is the most imagecore can do, and
on W1 and W2 thumbor beats it. This stage says by how much each step of the
work costs in each library, so that the report can show why. For each photo
of W1 and W2 (the same photos, to JPEG and to WebP), in this one process with
one libvips thread (as each of two floor processes has it), the CPU time of:

* libvips: ``jpegload`` at the floor's shrink (written to memory), then that
  plus the Lanczos resize, then that plus the floor's encoder
  (`bench.workloads.floor_save`: progressive JPEG, or WebP at effort 4);
* Pillow, as thumbor's PIL engine does it: ``draft`` to the target size and
  load, then that plus ``resize(LANCZOS)``, then that plus ``save`` (JPEG:
  quality 80, ``optimize``, ``progressive``; WebP: quality 80).

Each step's cost is the difference between two of these, medians of rounds
of repeats. The process's CPU time includes libvips' worker thread.
"""

from __future__ import annotations

import io
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips
from PIL import Image

from bench.corpus import CORPUS
from bench.workloads import (
    WORKLOADS,
    fit_size,
    floor_save,
    floor_setup,
    floor_shrunk,
    floor_thumbnail,
)

__all__ = ["LIBRARIES", "STEPS", "codecs", "cpu_ms"]

LIBRARIES = ("libvips", "pillow")
STEPS = ("decode", "resize", "encode")
_FORMATS = {"W1": ("jpeg", "JPEG"), "W2": ("webp", "WEBP")}
_PILLOW_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 80, "optimize": True, "progressive": True},
    "WEBP": {"quality": 80},
}


def cpu_ms(work: Callable[[], object], repeats: int, rounds: int, *, warm: bool = False) -> float:
    """Median over ``rounds`` of the CPU time of one call in ms (after a first one if ``warm``)."""
    if warm:
        work()
    times = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeats):
            work()
        times.append((time.process_time() - started) / repeats * 1000)
    return statistics.median(times)


def _vips_steps(source: Path, fmt: str) -> list[Callable[[], object]]:
    header = pyvips.Image.new_from_file(str(source), access="sequential")
    size = fit_size(header.width, header.height)

    def decode() -> object:
        return floor_shrunk(source, header, *size).write_to_memory()

    def resize() -> object:
        return floor_thumbnail(source, header, *size).write_to_memory()

    def encode() -> object:
        return floor_save(floor_thumbnail(source, header, *size), fmt, 80)

    return [decode, resize, encode]


def _pillow_steps(source: Path, fmt: str) -> list[Callable[[], object]]:
    with Image.open(source) as image:
        size = fit_size(image.width, image.height)
    data = source.read_bytes()

    def decode() -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.draft(None, size)
        image.load()
        return image

    def resize() -> Image.Image:
        return decode().resize(size, Image.Resampling.LANCZOS)

    def encode() -> bytes:
        out = io.BytesIO()
        resize().save(out, fmt, **_PILLOW_OPTIONS[fmt])
        return out.getvalue()

    return [decode, resize, encode]


def codecs(log: Callable[[str], None], *, limit: int | None = None) -> dict[str, Any]:
    """CPU ms per image of each step, per library, for W1 and W2: rows and means."""
    floor_setup(2)  # one libvips thread, as each of the two floor processes has
    repeats, rounds = (3, 3) if limit else (10, 5)
    out: dict[str, Any] = {}
    for key, (vips_fmt, pillow_fmt) in _FORMATS.items():
        log(f"codec costs {key}")
        workload = next(w for w in WORKLOADS if w.key == key)
        rows = []
        for source in workload.images(CORPUS)[:limit]:
            row: dict[str, Any] = {"image": source.name}
            for library, steps in (
                ("libvips", _vips_steps(source, vips_fmt)),
                ("pillow", _pillow_steps(source, pillow_fmt)),
            ):
                steps[-1]()  # warm: first-call costs stay out
                totals = [cpu_ms(step, repeats, rounds) for step in steps]
                row[library] = dict(zip(STEPS, _differences(totals), strict=True))
            rows.append(row)
        out[key] = {
            "rows": rows,
            "mean": {
                library: {s: statistics.fmean(r[library][s] for r in rows) for s in STEPS}
                for library in LIBRARIES
            },
        }
    return out


def _differences(totals: list[float]) -> list[float]:
    """Per-step costs from cumulative ones (decode, decode+resize, decode+resize+encode)."""
    return [totals[0], *(b - a for a, b in itertools.pairwise(totals))]
