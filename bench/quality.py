"""What the peer workloads keep of the picture: imagecore and thumbor against one reference.

Speed against thumbor means little if one side throws detail away, and both
decode JPEG at a reduced scale (libjpeg's DCT scaling) before resizing. For
W1, W2 and W6 each source image is resized three ways to the same size, at
the same quality setting (80):

* ``imagecore``: the service's processor (a JPEG is decoded at the largest
  of 1/2, 1/4, 1/8 scale at or above the target, then Lanczos-resized);
* ``libvips_thumbnail``: libvips' own ``thumbnail``, which keeps a factor of
  two for its final Lanczos step (the path imagecore took before), saved
  with the same options;
* ``thumbor``: one GET of thumbor's URL for the workload (Pillow's draft
  decode, then Lanczos).

Each output is scored with SSIMULACRA2 (`bench.scoring`) against a reference
made from the full-resolution decode with one Lanczos resize to the output's
size, and its bytes are counted.
"""

from __future__ import annotations

import statistics
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyvips

from bench.corpus import CORPUS
from bench.peer import THUMBOR_PATHS, thumbor
from bench.scoring import Reference
from bench.workloads import WORKLOADS, floor_save, service_request

__all__ = ["SUBJECTS", "quality"]

SUBJECTS = ("imagecore", "libvips_thumbnail", "thumbor")
_FORMATS = {"W1": "jpeg", "W2": "webp", "W6": "jpeg"}


def _ours(key: str, source: Path, out: Path) -> None:
    from adapters.vips.processor import VipsImageProcessor  # noqa: PLC0415 - libvips set up as the service

    step = next(w for w in WORKLOADS if w.key == key).steps[0]
    VipsImageProcessor().process(service_request(step, source, out))


def _reference(source: Path, size: tuple[int, int], path: Path) -> Reference:
    """The full-resolution decode of ``source`` resized once to ``size``, ready to score."""
    full = pyvips.Image.new_from_file(str(source))
    reference = full.resize(size[0] / full.width, vscale=size[1] / full.height)
    if (reference.width, reference.height) != size:
        raise RuntimeError(f"reference {reference.width}x{reference.height} for {size}")
    reference.pngsave(str(path))
    return Reference(path)


def quality(
    scratch: Path, log: Callable[[str], None], *, limit: int | None = None
) -> dict[str, Any]:
    """Score every subject on the peer workloads' images; rows and means per workload."""
    scratch.mkdir(parents=True, exist_ok=True)
    pyvips.cache_set_max(0)
    out: dict[str, Any] = {}
    with thumbor(CORPUS, scratch / "thumbor", 1) as peer:
        base = peer.bases[0]
        for key, fmt in _FORMATS.items():
            log(f"output quality {key}")
            workload = next(w for w in WORKLOADS if w.key == key)
            rows = []
            for source in workload.images(CORPUS)[:limit]:
                paths = {s: scratch / f"{key}-{source.stem}.{s}.{fmt}" for s in SUBJECTS}
                _ours(key, source, paths["imagecore"])
                made = pyvips.Image.new_from_file(str(paths["imagecore"]))
                thumbnail = pyvips.Image.thumbnail(
                    str(source), made.width, height=made.height, size="force"
                )
                paths["libvips_thumbnail"].write_bytes(floor_save(thumbnail, fmt, 80))
                url = base + THUMBOR_PATHS[key].format(name=source.relative_to(CORPUS).as_posix())
                with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - loopback
                    paths["thumbor"].write_bytes(response.read())
                row: dict[str, Any] = {"image": source.name}
                references: dict[tuple[int, int], Reference] = {}  # one per output size
                for subject, path in paths.items():
                    output = pyvips.Image.new_from_file(str(path))
                    size = (int(output.width), int(output.height))
                    if size not in references:
                        references[size] = _reference(
                            source, size, scratch / f"ref-{len(references)}.png"
                        )
                    score = references[size].ssimulacra2(path)
                    row[subject] = {"ssimulacra2": score, "bytes": path.stat().st_size}
                rows.append(row)
            out[key] = {
                "rows": rows,
                "summary": {
                    s: {
                        "ssimulacra2": statistics.fmean(r[s]["ssimulacra2"] for r in rows),
                        "bytes": statistics.fmean(r[s]["bytes"] for r in rows),
                    }
                    for s in SUBJECTS
                },
            }
    return out
