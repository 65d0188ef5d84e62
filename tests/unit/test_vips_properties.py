"""Properties of VipsImageProcessor on small synthetic images made with pyvips.

Sizes, bands, formats, EXIF orientations and parameters are drawn by
Hypothesis; every example writes its input into a fresh temporary folder.
Example counts are kept small so the file runs in well under a minute.
"""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from pathlib import Path

import pytest
import pyvips
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.vips.geometry import plan_resize
from adapters.vips.guard import sniff_bytes
from adapters.vips.io import MAX_SIDE
from adapters.vips.processor import VipsImageProcessor
from corpus import CORPUS, needs_corpus
from imagecore.errors import ImageTooLarge
from imagecore.ports import ProcessingRequest
from imagecore.products import OUTPUT_FORMATS, find_product

GPS_SOURCE = CORPUS / "edge" / "exif_gps.jpg"
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROCESSOR = VipsImageProcessor()
INPUT_SAVERS = {
    "jpeg": lambda image, path: image.jpegsave(str(path), Q=90, keep="all"),
    "png": lambda image, path: image.pngsave(str(path), keep="all"),
    "webp": lambda image, path: image.webpsave(str(path), Q=90, keep="all"),
    "gif": lambda image, path: image.gifsave(str(path)),
    "tiff": lambda image, path: image.tiffsave(str(path)),
}

sizes = st.integers(min_value=1, max_value=240)
boxes = st.integers(min_value=1, max_value=400)
fits = st.sampled_from(["inside", "outside", "cover", "contain", "fill"])


def synthetic(width: int, height: int, bands: int) -> pyvips.Image:
    """A gradient with some texture, so encoders and smartcrop have something to chew on."""
    ramp = pyvips.Image.xyz(width, height)
    x, y = ramp.extract_band(0), ramp.extract_band(1)
    layers = [x * 255 / max(width, 1), y * 255 / max(height, 1), (x + y) % 37 * 6, x * 0 + 200]
    image = layers[0].bandjoin(layers[1:bands]).cast("uchar")
    return image.copy(interpretation="b-w" if bands < 3 else "srgb")


def write_input(folder: Path, image: pyvips.Image, fmt: str) -> Path:
    path = folder / f"input.{fmt}"
    INPUT_SAVERS[fmt](image, path)
    return path


def run(key: str, source: Path, folder: Path, **raw: object):
    params = find_product(key).validate(raw)
    destination = folder / "output"
    return PROCESSOR.process(
        ProcessingRequest(key, params, source, destination, 10**8, 10)
    ), destination


@FAST
@given(
    width=sizes, height=sizes, box_width=boxes, box_height=boxes, fit=fits, upscale=st.booleans()
)
def test_planned_size_fits_the_box_and_never_enlarges_unless_asked(
    width, height, box_width, box_height, fit, upscale
):
    out_width, out_height = plan_resize(width, height, box_width, box_height, fit, upscale=upscale)
    if not upscale:
        assert out_width <= width
        assert out_height <= height
    if fit == "inside":
        assert out_width <= box_width
        assert out_height <= box_height
    if fit in ("outside", "cover") and upscale:
        assert out_width >= box_width
        assert out_height >= box_height
    if fit == "fill" and upscale:
        assert (out_width, out_height) == (box_width, box_height)
    if fit in ("inside", "outside", "contain", "cover"):
        # The aspect ratio is kept: each side is within one pixel of the exact
        # scale, so w*H - h*W = e1*H - e2*W with |e1|, |e2| <= 1.
        assert abs(out_width * height - out_height * width) <= width + height


@FAST
@given(
    width=sizes,
    height=sizes,
    bands=st.sampled_from([1, 3, 4]),
    fmt=st.sampled_from(sorted(INPUT_SAVERS)),
    box_width=boxes,
    box_height=boxes,
    fit=fits,
    upscale=st.booleans(),
)
# Scaled to 16415x245 to cover the box, then cut to it: a 1x245 WebP, no error.
@example(
    width=67, height=1, bands=1, fmt="webp", box_width=1, box_height=245, fit="cover", upscale=True
)
def test_resize_output_fits_the_requested_box(
    width, height, bands, fmt, box_width, box_height, fit, upscale
):
    planned = plan_resize(width, height, box_width, box_height, fit, upscale=upscale)
    # The output must fit the format, not the scaled image a cover then cuts to the box.
    encoded = (
        (min(planned[0], box_width), min(planned[1], box_height)) if fit == "cover" else planned
    )
    too_long = max(encoded) > MAX_SIDE.get(fmt, max(encoded))  # say, 16384 px of WebP
    with tempfile.TemporaryDirectory() as folder:
        source = write_input(Path(folder), synthetic(width, height, bands), fmt)
        with pytest.raises(ImageTooLarge, match="pixels a side") if too_long else nullcontext():
            result, _ = run(
                "images/resize",
                source,
                Path(folder),
                width=box_width,
                height=box_height,
                fit=fit,
                upscale=upscale,
            )
    if too_long:
        return
    size = (result.width, result.height)
    box = (box_width, box_height)
    if fit == "contain":
        assert size == box  # padded to the box whatever the scale
    elif fit == "inside":
        assert size[0] <= box_width
        assert size[1] <= box_height
    elif fit in ("cover", "fill"):
        assert size == (box if upscale else (min(box_width, width), min(box_height, height)))
    elif upscale:  # outside
        assert size[0] >= box_width
        assert size[1] >= box_height
    if not upscale and fit != "contain":
        assert size[0] <= width
        assert size[1] <= height


@FAST
@given(
    width=sizes,
    height=sizes,
    bands=st.sampled_from([1, 3, 4]),
    source_format=st.sampled_from(sorted(INPUT_SAVERS)),
    target=st.sampled_from(OUTPUT_FORMATS),
)
def test_convert_writes_the_requested_format_at_the_same_size(
    width, height, bands, source_format, target
):
    with tempfile.TemporaryDirectory() as folder:
        source = write_input(Path(folder), synthetic(width, height, bands), source_format)
        result, written = run("images/convert", source, Path(folder), format=target)
        data = written.read_bytes()
    assert sniff_bytes(data[:64]) == target == result.format
    assert (result.width, result.height) == (width, height)
    assert result.size == len(data)


@FAST
@given(
    width=st.integers(min_value=2, max_value=120),
    height=st.integers(min_value=2, max_value=120),
    orientation=st.integers(min_value=1, max_value=8),
    key=st.sampled_from(["images/convert", "images/thumbnail", "images/rotate", "images/compress"]),
)
def test_exif_orientation_is_applied_and_removed(width, height, orientation, key):
    image = synthetic(width, height, 3).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "input.jpg"
        image.jpegsave(str(source), keep="exif")
        raw = {"format": "png"} if key == "images/convert" else {}
        result, written = run(key, source, Path(folder), **raw)
        output = pyvips.Image.new_from_buffer(written.read_bytes(), "")
    expected = (height, width) if orientation >= 5 else (width, height)
    if key == "images/thumbnail":
        expected = tuple(min(side, 256) for side in expected)
    assert (result.width, result.height) == expected
    assert not output.get_typeof("orientation") or output.get("orientation") == 1


@needs_corpus
@FAST
@given(
    key=st.sampled_from(
        [
            "images/convert",
            "images/resize",
            "images/crop",
            "images/rotate",
            "images/thumbnail",
            "images/compress",
            "images/strip-metadata",
            "images/watermark",
        ]
    ),
    source_format=st.sampled_from(["jpeg", "png", "webp"]),
    keep_metadata=st.booleans(),
)
def test_no_gps_ever_and_no_exif_unless_kept(key, source_format, keep_metadata):
    exif = pyvips.Image.new_from_file(str(GPS_SOURCE)).get("exif-data")
    image = synthetic(64, 48, 3).copy()
    image.set_type(pyvips.GValue.blob_type, "exif-data", exif)
    raw: dict[str, object] = {
        "images/convert": {"format": source_format},
        "images/resize": {"width": 32},
        "images/crop": {"aspect_ratio": "1:1"},
        "images/watermark": {"text": "x"},
    }.get(key, {})
    if keep_metadata and "keep_metadata" in {p.name for p in find_product(key).parameters}:
        raw = {**raw, "keep_metadata": True}
    with tempfile.TemporaryDirectory() as folder:
        source = write_input(Path(folder), image, source_format)
        assert pyvips.Image.new_from_file(str(source)).get_typeof("exif-ifd3-GPSLatitude")
        _, written = run(key, source, Path(folder), **raw)
        data = written.read_bytes()
        output = pyvips.Image.new_from_buffer(data, "")
    fields = output.get_fields()
    assert not [f for f in fields if f.startswith("exif-ifd3-")]
    if not raw.get("keep_metadata"):
        assert not [f for f in fields if f.startswith(("exif-", "xmp-", "iptc-"))]


@settings(max_examples=15, deadline=None)
@given(
    width=st.integers(min_value=8, max_value=160),
    height=st.integers(min_value=8, max_value=160),
    fmt=st.sampled_from(["jpeg", "png", "webp"]),
)
def test_compress_never_returns_a_bigger_file(width, height, fmt):
    with tempfile.TemporaryDirectory() as folder:
        source = write_input(Path(folder), synthetic(width, height, 3), fmt)
        result, written = run("images/compress", source, Path(folder))
        assert written.stat().st_size == result.size <= source.stat().st_size
    assert result.format == fmt
