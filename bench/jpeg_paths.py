"""libjpeg-turbo (Pillow's) against libvips' mozjpeg for W1's JPEG decode and small encode.

Usage: ``python -m bench.jpeg_paths [--photos N] [--json OUT]``. For each
corpus photo, in this one process with one libvips thread (as each of the
floor's two processes has it), CPU ms per call (median of rounds of repeats):

* decode at the floor's shrink: libvips ``jpegload`` (`bench.workloads.floor_shrunk`,
  written to memory) against Pillow's ``draft`` to the same scale and ``load``
  (libjpeg-turbo's scaled IDCT); both give the same size, and the mean absolute
  difference of their pixels is reported;
* encode of W1's output, the same 512 px pixels (the floor's resize) for both:
  libvips with the processor's options at quality 80 (mozjpeg: ImageMagick's
  quant table, optimised Huffman tables, progressive, overshoot deringing)
  against Pillow's libjpeg-turbo (``optimize``, ``progressive``, standard
  tables) at the lowest quality whose SSIMULACRA2 against the uncompressed
  pixels reaches libvips' score, and at quality 80 as thumbor saves it.

The decision it informs is docs/decisions/0017.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyvips
from PIL import Image

from bench.codecs import cpu_ms
from bench.corpus import CORPUS
from bench.scoring import Reference
from bench.workloads import fit_size, floor_save, floor_setup, floor_shrunk, floor_thumbnail

__all__ = ["main", "pillow_jpeg", "study", "vips_plain_jpeg"]


def _cpu_ms(work: Callable[[], object]) -> float:
    return cpu_ms(work, repeats=10, rounds=5, warm=True)


def pillow_jpeg(image: Image.Image, quality: int) -> bytes:
    """``image`` saved as thumbor's PIL engine saves a JPEG (libjpeg-turbo)."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def vips_plain_jpeg(image: pyvips.Image, quality: int) -> bytes:
    """libvips' mozjpeg as plain libjpeg-turbo saves: standard tables, no deringing."""
    return bytes(
        image.jpegsave_buffer(
            Q=quality, optimize_coding=True, interlace=True, subsample_mode="auto", keep="icc"
        )
    )


def _score(reference: Reference, data: bytes, folder: Path) -> float:
    path = folder / "candidate.jpg"
    path.write_bytes(data)
    return reference.ssimulacra2(path)


def _one(source: Path, folder: Path) -> dict[str, Any]:
    header = pyvips.Image.new_from_file(str(source), access="sequential")
    size = fit_size(header.width, header.height)
    data = source.read_bytes()

    def vips_decode() -> pyvips.Image:
        return floor_shrunk(source, header, *size)

    def pillow_decode() -> Image.Image:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", size)
        image.load()
        return image

    ours, theirs = vips_decode(), pillow_decode()
    vips_pixels = np.ndarray(
        (ours.height, ours.width, ours.bands), np.uint8, ours.write_to_memory()
    ).astype(np.int16)
    same_size = (ours.width, ours.height) == theirs.size
    difference = (
        float(np.abs(vips_pixels - np.asarray(theirs, np.int16)).mean()) if same_size else None
    )
    resized = floor_thumbnail(source, header, *size).copy_memory()
    pixels = Image.fromarray(
        np.ndarray(
            (resized.height, resized.width, resized.bands), np.uint8, resized.write_to_memory()
        )
    )
    reference_path = folder / "reference.png"
    pixels.save(reference_path)
    reference = Reference(reference_path)
    encoders: dict[str, Callable[[int], bytes]] = {
        "libvips": lambda q: floor_save(resized, "jpeg", q),
        "libvips_plain": lambda q: vips_plain_jpeg(resized, q),
        "pillow": lambda q: pillow_jpeg(pixels, q),
    }
    bar = _score(reference, encoders["libvips"](80), folder)

    def measured(name: str, quality: int) -> dict[str, Any]:
        data = encoders[name](quality)
        return {
            "quality": quality,
            "ms": _cpu_ms(lambda: encoders[name](quality)),
            "bytes": len(data),
            "ssimulacra2": _score(reference, data, folder),
        }

    def matched(name: str) -> int:
        return next(
            (q for q in range(60, 101) if _score(reference, encoders[name](q), folder) >= bar),
            100,
        )

    def to_vips() -> pyvips.Image:
        image = pillow_decode()
        return pyvips.Image.new_from_memory(image.tobytes(), image.width, image.height, 3, "uchar")

    return {
        "photo": source.name,
        "decoded": [ours.width, ours.height],
        "decode_same_size": same_size,
        "decode_mean_abs_difference": difference,
        "decode_ms": {
            "libvips": _cpu_ms(lambda: vips_decode().write_to_memory()),
            "pillow": _cpu_ms(pillow_decode),
            "pillow_to_vips": _cpu_ms(lambda: to_vips().copy_memory()),
        },
        "encode": {
            "libvips_q80": measured("libvips", 80),
            "libvips_plain_matched": measured("libvips_plain", matched("libvips_plain")),
            "pillow_matched": measured("pillow", matched("pillow")),
            "pillow_q80": measured("pillow", 80),
        },
    }


def study(photos: list[Path]) -> dict[str, Any]:
    """Every photo's figures, and their means."""
    floor_setup(2)  # one libvips thread, as each of the floor's two processes has
    with tempfile.TemporaryDirectory(prefix="jpeg-paths-") as scratch:
        rows = [_one(photo, Path(scratch)) for photo in photos]
    encoders = rows[0]["encode"].keys()
    return {
        "versions": {
            "libvips": ".".join(str(pyvips.version(i)) for i in range(3)),
            "pillow": Image.__version__,
            "libjpeg_turbo (Pillow)": _pillow_turbo(),
        },
        "rows": rows,
        "mean": {
            "decode_ms": {
                lib: statistics.fmean(r["decode_ms"][lib] for r in rows)
                for lib in rows[0]["decode_ms"]
            },
            "encode": {
                enc: {
                    k: statistics.fmean(r["encode"][enc][k] for r in rows)
                    for k in ("quality", "ms", "bytes", "ssimulacra2")
                }
                for enc in encoders
            },
        },
    }


def _pillow_turbo() -> str:
    from PIL import features  # noqa: PLC0415

    return str(features.version("libjpeg_turbo"))


def _markdown(result: dict[str, Any]) -> str:
    """Two tables: decode CPU ms per photo, and each encoder's q, ms, KiB and SSIMULACRA2."""
    rows = [*result["rows"], {"photo": "**mean**", **result["mean"]}]
    decoders = list(rows[0]["decode_ms"])
    encoders = list(rows[0]["encode"])
    lines = [
        "| photo | " + " | ".join(f"decode ms: {d}" for d in decoders) + " | pixels differ by |",
        "| --- |" + " ---: |" * (len(decoders) + 1),
    ]
    for r in rows:
        diff = r.get("decode_mean_abs_difference")
        lines.append(
            f"| {r['photo']} | "
            + " | ".join(f"{r['decode_ms'][d]:.2f}" for d in decoders)
            + f" | {'' if diff is None else f'{diff:.2f}'} |"
        )
    lines += [
        "",
        "| photo | " + " | ".join(f"{e}: q, ms, KiB, SSIMULACRA2" for e in encoders) + " |",
        "| --- |" + " ---: |" * len(encoders),
    ]
    for r in rows:
        cells = [
            f"q{r['encode'][e]['quality']:.0f}, {r['encode'][e]['ms']:.2f}, "
            f"{r['encode'][e]['bytes'] / 1024:.1f}, {r['encode'][e]['ssimulacra2']:.1f}"
            for e in encoders
        ]
        lines.append(f"| {r['photo']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure, print a Markdown table, optionally write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.jpeg_paths", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--photos", type=int, help="the first N corpus photos (default all 8)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    photos = sorted((CORPUS / "photos").glob("*.jpg"))[: args.photos]
    result = study(photos)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    sys.stdout.write(json.dumps(result["versions"]) + "\n" + _markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
