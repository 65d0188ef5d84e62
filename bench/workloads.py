"""The six workloads, as our products and parameters, and as the plain pyvips floor.

Each workload is one or more product steps (a step's output is the next
step's input) run on a set of corpus images. The floor is the same libvips
work written as the shortest pyvips loop: the same loader (shrink-on-load;
at 1/8 a progressive JPEG read from its DC scans, `adapters.vips.jpeg_scans`),
resize, crop or rotation and the same saver options as `adapters.vips.io`
(`floor_matches_service` checks the two write the same bytes), without the
service's sniffing, header limits, metadata report, process pool, storage,
repository or broker. libvips' operation cache is off in both, as in the
service, so repeating an image never reuses an earlier result.

Mapping (the issue's words -> ours):

* W1 fit into 512x512, JPEG q80, progressive, metadata stripped:
  ``images/resize width=512 height=512 fit=inside format=jpeg quality=80``
  (progressive: the processor's JPEG saver always sets ``interlace``;
  stripped: only an ICC profile survives, and these photos carry none).
* W2, W3: the same with ``format=webp`` / ``format=avif``; AVIF at the
  processor's default effort (4).
* W4 crop + rotate 90 + resize: no product does all three, so two chained
  jobs: ``images/resize width=512 height=512 fit=cover`` (shrink, then crop
  the centre to the box) at JPEG q95, then ``images/rotate angle=90``
  at q80. An explicit crop rectangle would need a third job (``images/crop``).
* W5 compress, same dimensions: ``images/compress`` with its defaults
  (``target_ssim`` 0.98). Here the work *is* our quality search, so the
  floor runs the same processor in-process: the ratio measures the
  service's overhead around it.
* W6 a 5120x2880 source to 500 px: ``images/resize width=500 format=jpeg
  quality=80`` on the two large photos.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from bench.corpus import CORPUS

if TYPE_CHECKING:
    from imagecore.ports import ProcessingRequest

__all__ = [
    "WORKLOADS",
    "Step",
    "Workload",
    "fit_size",
    "floor_matches_service",
    "floor_run",
    "floor_save",
    "floor_setup",
    "floor_shrunk",
    "floor_thumbnail",
    "service_request",
]

#: The processor's JPEG saver options for every product but images/compress.
JPEG_OPTIONS: Final = {
    "optimize_coding": True,
    "overshoot_deringing": True,
    "quant_table": 3,
    "interlace": True,
}


@attrs.frozen
class Step:
    """One job: a product and its parameters."""

    product: str
    params: dict[str, Any]


@attrs.frozen
class Workload:
    """A named workload: its steps, its images and how many to run."""

    key: str
    title: str
    folder: str
    steps: tuple[Step, ...]
    count: int  # images per measured run
    quick_count: int

    def images(self, root: Path) -> list[Path]:
        """The corpus images this workload runs on."""
        return sorted((root / self.folder).glob("*.jpg"))

    def run_count(self, *, quick: bool) -> int:
        """Images per measured run."""
        return self.quick_count if quick else self.count

    def sources(self, count: int) -> list[Path]:
        """``count`` images of the corpus, the workload's images over and over."""
        images = self.images(CORPUS)
        return (images * (count // len(images) + 1))[:count]

    def describe(self) -> str:
        """The steps as ``product k=v ...`` joined by arrows."""
        return " -> ".join(
            f"{s.product} " + " ".join(f"{k}={v}" for k, v in s.params.items()) for s in self.steps
        ).strip()


def _fit(fmt: str) -> Step:
    return Step(
        "images/resize",
        {"width": 512, "height": 512, "fit": "inside", "format": fmt, "quality": 80},
    )


#: Images per measured run: enough for a run of several seconds. (At 96 W1 images a
#: two-process run lasted about a second, and one full run's three W1 rounds spread
#: from 79.6 to 91.3 images per second.)
WORKLOADS: Final = (
    Workload("W1", "fit 512x512, JPEG q80", "photos", (_fit("jpeg"),), 384, 16),
    Workload("W2", "fit 512x512, WebP q80", "photos", (_fit("webp"),), 192, 16),
    Workload("W3", "fit 512x512, AVIF q80", "photos", (_fit("avif"),), 16, 8),
    Workload(
        "W4",
        "crop + rotate 90 + resize",
        "photos",
        (
            Step(
                "images/resize",
                {"width": 512, "height": 512, "fit": "cover", "format": "jpeg", "quality": 95},
            ),
            Step("images/rotate", {"angle": 90, "format": "jpeg", "quality": 80}),
        ),
        64,
        16,
    ),
    Workload("W5", "compress (same size)", "photos", (Step("images/compress", {}),), 4, 2),
    Workload(
        "W6",
        "5120x2880 to 500 px, JPEG q80",
        "large",
        (Step("images/resize", {"width": 500, "format": "jpeg", "quality": 80}),),
        48,
        8,
    ),
)


# -- the floor: plain pyvips, run in a child process -------------------------------------


def floor_save(image: Any, fmt: str, quality: int) -> bytes:  # noqa: ANN401 - a pyvips.Image
    """Encode as the processor does for every product but images/compress."""
    import pyvips  # noqa: PLC0415 - loaded in the floor's children only

    icc = pyvips.enums.ForeignKeep.ICC
    if fmt == "jpeg":
        return bytes(
            image.jpegsave_buffer(Q=quality, subsample_mode="auto", keep=icc, **JPEG_OPTIONS)
        )
    if fmt == "webp":
        return bytes(image.webpsave_buffer(Q=quality, effort=4, keep=icc))
    return bytes(
        image.heifsave_buffer(
            compression="av1", Q=quality, effort=4, bitdepth=8, subsample_mode="auto", keep=icc
        )
    )


def _header(source: Path) -> Any:  # noqa: ANN401 - a pyvips.Image
    """The source's header (no pixel decoded), read once per image as the processor does."""
    import pyvips  # noqa: PLC0415 - loaded in the floor's children only

    return pyvips.Image.new_from_file(str(source), access="sequential")


def floor_shrunk(source: Path, header: Any, width: int, height: int) -> Any:  # noqa: ANN401
    """The JPEG ``source`` loaded at the largest power-of-two shrink that stays above the target.

    At 1/8 a progressive JPEG is read from its DC scans, as the processor reads it.
    """
    import pyvips  # noqa: PLC0415 - loaded in the floor's children only

    from adapters.vips.jpeg_scans import dc_scans_only  # noqa: PLC0415

    factor = min(header.width / width, header.height / height)
    shrink = next((s for s in (8, 4, 2) if factor >= s), 1)
    interlaced = header.get_typeof("interlaced") and header.get("interlaced")
    reduced = dc_scans_only(source.read_bytes()) if shrink == 8 and interlaced else None
    if reduced is None:
        return pyvips.Image.jpegload(str(source), shrink=shrink, access="sequential")
    return pyvips.Image.jpegload_buffer(reduced, shrink=shrink, access="sequential")


def fit_size(width: int, height: int, box: int = 512) -> tuple[int, int]:
    """``width`` x ``height`` scaled to fit inside ``box`` x ``box``, as W1-W3 size it."""
    scale = min(box / width, box / height)
    return round(width * scale), round(height * scale)


def floor_thumbnail(source: Path, header: Any, width: int, height: int) -> Any:  # noqa: ANN401
    """Shrink on load (`floor_shrunk`), then Lanczos to exactly ``width`` x ``height``."""
    shrunk = floor_shrunk(source, header, width, height)
    return shrunk.thumbnail_image(width, height=height, size="force")


def _floor_one(key: str, source: Path, destination: Path) -> int:
    import pyvips  # noqa: PLC0415 - loaded in the floor's children only

    if key in ("W1", "W2", "W3"):
        fmt = {"W1": "jpeg", "W2": "webp", "W3": "avif"}[key]
        header = _header(source)
        image = floor_thumbnail(source, header, *fit_size(header.width, header.height))
        data = floor_save(image, fmt, 80)
    elif key == "W6":
        # The service plans integer sizes itself (500 x round(h * 500 / w)) and forces them.
        header = _header(source)
        image = floor_thumbnail(source, header, 500, round(header.height * 500 / header.width))
        data = floor_save(image, "jpeg", 80)
    elif key == "W4":
        # Cover: scale so both sides reach the box (rounding up), then cut the centre.
        header = _header(source)
        scale = max(512 / header.width, 512 / header.height)
        cover_w = math.ceil(header.width * scale - 1e-9)
        cover_h = math.ceil(header.height * scale - 1e-9)
        image = floor_thumbnail(source, header, cover_w, cover_h).crop(
            round((cover_w - 512) / 2), round((cover_h - 512) / 2), 512, 512
        )
        middle = destination.with_suffix(".step1.jpg")
        middle.write_bytes(floor_save(image, "jpeg", 95))
        data = floor_save(pyvips.Image.new_from_file(str(middle)).rot("d90"), "jpeg", 80)
    else:  # W5: the work is the processor's own search
        from adapters.vips.processor import VipsImageProcessor  # noqa: PLC0415

        request = service_request(Step("images/compress", {}), source, destination)
        return VipsImageProcessor().process(request).size
    destination.write_bytes(data)
    return len(data)


def service_request(step: Step, source: Path, out: Path) -> ProcessingRequest:
    """The processor's request for ``step`` on ``source``, within the product's limits."""
    from imagecore.ports import ProcessingRequest  # noqa: PLC0415
    from imagecore.products import find_product  # noqa: PLC0415

    product = find_product(step.product)
    return ProcessingRequest(
        product.key,
        product.validate(step.params),
        source,
        out,
        product.limits.max_pixels,
        product.limits.max_frames,
    )


def floor_setup(processes: int = 1) -> None:
    """Pool initializer: libvips' operation cache off, its threads shared out and its log
    messages kept out of Python, numpy's BLAS on one thread (compress's SSIM), as the
    service's pool children have them."""
    import pyvips  # noqa: PLC0415

    from adapters.vips.pool import child_threads  # noqa: PLC0415
    from adapters.vips.ssim import one_blas_thread  # noqa: PLC0415

    pyvips._remove_log_handler()  # noqa: SLF001 - as configure_vips does in the service
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(child_threads(processes))
    one_blas_thread()


def floor_run(key: str, sources: list[Path], scratch: Path) -> tuple[float, int]:
    """Run workload ``key`` over ``sources`` in this process; (seconds, output bytes)."""
    import time  # noqa: PLC0415

    started = time.perf_counter()
    total = 0
    for index, source in enumerate(sources):
        total += _floor_one(key, source, scratch / f"floor-{index % 4}.out")
    return time.perf_counter() - started, total


def floor_matches_service(key: str, source: Path, scratch: Path) -> bool:
    """Whether the floor writes exactly the bytes the processor writes for ``source``."""
    from adapters.vips.processor import VipsImageProcessor  # noqa: PLC0415

    workload = next(w for w in WORKLOADS if w.key == key)
    floor_setup()
    floor_out = scratch / f"match-{key}.floor"
    _floor_one(key, source, floor_out)
    current = source
    for index, step in enumerate(workload.steps):
        out = scratch / f"match-{key}.{index}"
        VipsImageProcessor().process(service_request(step, current, out))
        current = out
    return current.read_bytes() == floor_out.read_bytes()
