"""VipsImageProcessor on the shared corpus: every product, hostile files, metadata policy.

The SSIM used to judge compress is this file's own: scikit-image's default
``structural_similarity`` re-done with libvips (7x7 uniform window, sample
covariance, borders cropped, mean over the RGB channels), a different window
and code path from the Gaussian SSIM the processor searches with.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import attrs
import pytest
import pyvips

from adapters.vips import io as vips_io
from adapters.vips.describe import exif_value
from adapters.vips.guard import sniff_bytes
from adapters.vips.io import Source, jpeg_shrink, open_source, thumbnail
from adapters.vips.jpeg_scans import dc_scans_only
from adapters.vips.metadata import Keep, strip
from adapters.vips.processor import VipsImageProcessor, configure_vips, self_test
from corpus import CORPUS, PHOTOS, needs_corpus
from imagecore.errors import (
    CorruptImage,
    ImageCoreError,
    ImageTooLarge,
    InvalidParameter,
    ProcessingError,
    UnknownProduct,
    UnsupportedMediaType,
)
from imagecore.formats import SNIFF_BYTES, sniff
from imagecore.model import ImageInfo
from imagecore.params import Kind, Parameter
from imagecore.ports import ProcessingRequest, ProcessingResult
from imagecore.products import CATALOGUE, find_product

pytestmark = needs_corpus

MAX_PIXELS = 100_000_000
SAMPLES = [
    "misc/rocket.jpg",
    "misc/chelsea.png",
    "misc/logo.png",
    "misc/no_time_for_that_tiny.gif",
    "edge/hopper.avif",
    "edge/tiff_16bit_RGBa.tiff",
    "edge/pil_sample_cmyk.jpg",
    "edge/anim_frame1.webp",
]
DEFAULTS = {
    "images/compress": {},
    "images/convert": {"format": "webp"},
    "images/resize": {"width": 120},
    "images/crop": {"aspect_ratio": "1:1"},
    "images/rotate": {"angle": 90, "flip": "horizontal"},
    "images/thumbnail": {},
    "images/strip-metadata": {},
    "images/metadata": {},
    "images/watermark": {"text": "imagecore"},
}


@pytest.fixture(scope="module")
def processor():
    return VipsImageProcessor()


def run(processor, key, source, tmp_path, *, max_pixels=MAX_PIXELS, max_frames=100, **raw):
    params = find_product(key).validate(raw)
    destination = tmp_path / f"out-{key.split('/')[1]}"
    request = ProcessingRequest(key, params, Path(source), destination, max_pixels, max_frames)
    return processor.process(request), destination


def load(path: Path) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(path.read_bytes(), "")


def skimage_ssim(reference: pyvips.Image, candidate: pyvips.Image, window: int = 7) -> float:
    a, b = reference.cast("float"), candidate.cast("float")
    kernel = pyvips.Image.new_from_list([[1] * window], scale=window)
    blur = lambda image: image.convsep(kernel, precision="float")  # noqa: E731 - separable box mean
    correction = window * window / (window * window - 1)
    mu_a, mu_b = blur(a), blur(b)
    var_a = (blur(a * a) - mu_a * mu_a) * correction
    var_b = (blur(b * b) - mu_b * mu_b) * correction
    cov = (blur(a * b) - mu_a * mu_b) * correction
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((mu_a * mu_b * 2 + c1) * (cov * 2 + c2)) / (
        (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    )
    pad = (window - 1) // 2
    ssim_map = ssim_map.crop(pad, pad, ssim_map.width - 2 * pad, ssim_map.height - 2 * pad)
    return sum(ssim_map.extract_band(i).avg() for i in range(ssim_map.bands)) / ssim_map.bands


# ----------------------------------------------------------------------------- the perimeter


def test_self_test_passes_and_svg_loaders_stay_blocked():
    self_test()
    with pytest.raises(pyvips.Error):
        pyvips.Image.svgload_buffer(
            b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
        )


_DAMAGED_JPEG_SCRIPT = """
import logging, sys
from pathlib import Path
from adapters.vips.processor import VipsImageProcessor
from imagecore.errors import CorruptImage
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product
records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("pyvips").addHandler(handler)
logging.getLogger("pyvips").setLevel(logging.DEBUG)
product = find_product("images/thumbnail")
source = Path(sys.argv[1])
request = ProcessingRequest(
    product.key, product.validate({"width": 200}), source, source.with_suffix(".out"), 10**8, 1
)
try:
    VipsImageProcessor().process(request)
except CorruptImage:
    pass
print(sum(r.getMessage().startswith("VIPS:") for r in records))
"""


@pytest.fixture
def damaged_jpeg(tmp_path: Path) -> Path:
    data = PHOTOS[0].read_bytes()
    damaged = tmp_path / "cut.jpg"
    damaged.write_bytes(data[: len(data) // 2])
    return damaged


def test_a_hosts_process_keeps_pyvips_log_handler(damaged_jpeg: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIPS_WARNING"}
    done = subprocess.run(  # noqa: S603 - our own script, run by this interpreter
        [sys.executable, "-c", _DAMAGED_JPEG_SCRIPT, str(damaged_jpeg)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() != "0"  # the host's logging got libvips' messages, as before
    assert "VIPS-WARNING" not in done.stderr


def test_libvips_messages_never_run_python_on_imagecores_threads(damaged_jpeg: Path) -> None:
    # pyvips' handler would run Python on libvips' worker threads (see configure_vips):
    # the command's process (and the pool's children) take it away and silence libvips.
    env = {k: v for k, v in os.environ.items() if k != "VIPS_WARNING"}
    imagecore = str(Path(sys.executable).with_name("imagecore"))
    command = ["process", "images/thumbnail", str(damaged_jpeg), str(damaged_jpeg) + ".out"]
    done = subprocess.run(  # noqa: S603 - our own console script
        [imagecore, *command, "-p", "width=200"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "VIPS" not in done.stderr


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
        ("drawing.jpg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>'),
        ("paper.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
        ("bitmap.bmp", b"BM" + bytes(60)),
        ("archive.zip", b"PK\x03\x04" + bytes(40)),
        ("picture.ppm", b"P6\n2 2\n255\n" + bytes(12)),
        ("empty.png", b""),
        ("notes.txt", b"just some words, not an image"),
        ("movie.mp4", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"),
    ],
)
def test_anything_but_the_listed_formats_is_refused_before_decoding(
    processor, tmp_path, name, content
):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedMediaType):
        processor.inspect(path, MAX_PIXELS, 100)
    with pytest.raises(UnsupportedMediaType):
        run(processor, "images/thumbnail", path, tmp_path)


def test_a_broken_png_is_corrupt(processor, tmp_path):
    with pytest.raises(CorruptImage):
        run(processor, "images/thumbnail", CORPUS / "edge/broken.png", tmp_path)


def test_a_truncated_jpeg_is_corrupt(processor, tmp_path):
    whole = (CORPUS / "misc/rocket.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptImage):
        run(processor, "images/resize", truncated, tmp_path, width=100)


def test_the_gif_decompression_bomb_is_too_large_from_its_header(processor, tmp_path):
    bomb = CORPUS / "edge/decompression_bomb.gif"
    with pytest.raises(ImageTooLarge):
        processor.inspect(bomb, MAX_PIXELS, 100)
    with pytest.raises(ImageTooLarge):
        run(processor, "images/metadata", bomb, tmp_path)


def test_pixel_and_frame_limits_apply_before_decoding(processor):
    with pytest.raises(ImageTooLarge, match="pixels"):
        processor.inspect(PHOTOS[0], 2560 * 1600 - 1, 100)
    with pytest.raises(ImageTooLarge, match="frames"):
        processor.inspect(CORPUS / "edge/dispose_bgnd_rgba.gif", MAX_PIXELS, 2)
    # Frames count towards pixels: 5 frames of 100x100.
    with pytest.raises(ImageTooLarge):
        processor.inspect(CORPUS / "edge/dispose_bgnd_rgba.gif", 5 * 100 * 100 - 1, 100)


def test_hevc_heif_is_read_but_reported_undecodable(processor, tmp_path):
    info = processor.inspect(CORPUS / "edge/hopper.heif", MAX_PIXELS, 100)
    assert (info.format, info.width, info.height) == ("heif", 128, 128)
    with pytest.raises(UnsupportedMediaType, match="HEVC"):
        run(processor, "images/convert", CORPUS / "edge/hopper.heif", tmp_path, format="jpeg")


def _processor_sniff(head: bytes) -> str | None:
    try:
        return sniff_bytes(head)
    except UnsupportedMediaType:
        return None


def test_a_heif_of_brand_mif2_is_heif_at_upload_and_in_the_processor():
    head = bytearray((CORPUS / "edge/hopper.heif").read_bytes()[:SNIFF_BYTES])
    assert head[8:28] == b"heic\0\0\0\0mif1heicmiaf"  # major heic; mif1, heic, miaf
    head[8:12], head[16:24] = b"mif2", b"miafmiaf"  # only MIAF brands left, mif2 major
    assert sniff(bytes(head)) == _processor_sniff(bytes(head)) == "heif"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (CORPUS / "edge").iterdir()) if CORPUS.is_dir() else []
)
def test_the_upload_and_the_processor_name_every_edge_file_alike(name):
    head = (CORPUS / "edge" / name).read_bytes()[:SNIFF_BYTES]
    assert sniff(head) == _processor_sniff(head)


@pytest.mark.parametrize("key", [p.key for p in CATALOGUE])
@pytest.mark.parametrize(
    "name", sorted(p.name for p in (CORPUS / "edge").iterdir()) if CORPUS.is_dir() else []
)
def test_no_libvips_error_escapes_on_any_edge_file(processor, tmp_path, key, name):
    try:
        result, _ = run(processor, key, CORPUS / "edge" / name, tmp_path, **DEFAULTS[key])
    except ImageCoreError:
        return
    assert isinstance(result, ProcessingResult)


def test_an_unknown_product_is_refused(processor, tmp_path):
    request = ProcessingRequest("images/sharpen", {}, PHOTOS[0], tmp_path / "x", MAX_PIXELS, 1)
    with pytest.raises(UnknownProduct):
        processor.process(request)


def test_the_processor_pickles_and_runs_in_a_fresh_process(tmp_path):
    copy = pickle.loads(pickle.dumps(VipsImageProcessor()))  # noqa: S301 - our own bytes
    assert copy == VipsImageProcessor()
    params = find_product("images/thumbnail").validate({})
    request = ProcessingRequest(
        "images/thumbnail", params, CORPUS / "misc/rocket.jpg", tmp_path / "t", MAX_PIXELS, 1
    )
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(VipsImageProcessor().process, request).result(timeout=120)
    assert (result.width, result.height) == (256, 171)


# ----------------------------------------------------------------------------- every product


@pytest.mark.parametrize("key", [p.key for p in CATALOGUE if p.key != "images/compress"])
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_product_writes_what_it_reports(processor, tmp_path, key, sample):
    result, written = run(processor, key, CORPUS / sample, tmp_path, **DEFAULTS[key])
    data = written.read_bytes()
    assert result.size == len(data) > 0
    assert result.input.format == sniff_bytes((CORPUS / sample).read_bytes()[:64])
    if result.format == "json":
        assert json.loads(data) == result.metadata
        return
    assert sniff_bytes(data[:64]) == result.format
    assert result.extension in {"jpg", "png", "webp", "avif", "gif", "tiff"}
    output = load(written)
    page_height = output.get("page-height") if output.get_typeof("page-height") else output.height
    assert (output.width, page_height) == (result.width, result.height)
    assert not [f for f in output.get_fields() if f.startswith(("exif-", "xmp-", "iptc-"))]


@pytest.mark.parametrize(
    "sample",
    [
        "misc/chelsea.png",
        "misc/logo.png",
        "edge/hopper.avif",
        "misc/rocket.jpg",
        pytest.param("webp/wood-4096x4096.webp", marks=pytest.mark.slow),
    ],
)
def test_compress_keeps_the_format_and_never_grows(processor, tmp_path, sample):
    source = CORPUS / sample
    result, _written = run(processor, "images/compress", source, tmp_path)
    assert result.format == result.input.format
    assert result.size <= source.stat().st_size
    assert result.metadata["ssim"] >= 0.98 or result.metadata["strategy"] != "reencoded"


def test_compress_returns_the_stripped_original_when_nothing_encodes_smaller(processor, tmp_path):
    tiny = tmp_path / "tiny.jpg"
    pyvips.Image.new_from_file(str(CORPUS / "misc/rocket.jpg")).jpegsave(str(tiny), Q=5)
    result, _written = run(processor, "images/compress", tiny, tmp_path)
    assert result.size <= tiny.stat().st_size
    assert result.metadata["strategy"] in {"reencoded", "original", "stripped-original"}


@pytest.mark.slow
@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.stem)
def test_compress_makes_every_photo_smaller_and_visually_the_same(processor, tmp_path, photo):
    result, written = run(processor, "images/compress", photo, tmp_path)
    assert result.size < photo.stat().st_size
    assert result.metadata["quality"] is not None
    similarity = skimage_ssim(pyvips.Image.new_from_file(str(photo)), load(written))
    assert similarity >= 0.97, (
        f"{photo.name}: SSIM {similarity:.4f} at quality {result.metadata['quality']}"
    )


def test_compress_with_an_explicit_quality_uses_it(processor, tmp_path):
    result, _ = run(processor, "images/compress", CORPUS / "misc/rocket.jpg", tmp_path, quality=40)
    assert result.metadata["quality"] == 40


@pytest.mark.parametrize("quality", [70, 80, 90])
def test_compress_at_a_quality_above_the_inputs_never_returns_more_bytes(
    processor, tmp_path, quality
):
    # Re-encoding a quality-20 JPEG at 70-90 costs 1.5-3 times its bytes: the
    # original (stripped) comes back instead, however small the excess.
    source = tmp_path / "low.jpg"
    pyvips.Image.new_from_file(str(CORPUS / "misc/rocket.jpg")).jpegsave(str(source), Q=20)
    result, written = run(processor, "images/compress", source, tmp_path, quality=quality)
    assert written.stat().st_size == result.size <= source.stat().st_size
    assert "larger_than_input" not in result.metadata


def test_compress_that_falls_back_to_the_original_drops_gps_even_when_keeping_metadata(
    processor, tmp_path
):
    exif = pyvips.Image.new_from_file(str(CORPUS / "edge/exif_gps.jpg")).get("exif-data")
    image = pyvips.Image.new_from_file(str(CORPUS / "misc/rocket.jpg")).copy()
    image.set_type(pyvips.GValue.blob_type, "exif-data", exif)
    source = tmp_path / "located.jpg"
    image.jpegsave(str(source), Q=20)
    assert pyvips.Image.new_from_file(str(source)).get_typeof("exif-ifd3-GPSLatitude")
    result, written = run(
        processor, "images/compress", source, tmp_path, quality=80, keep_metadata=True
    )
    assert result.metadata["strategy"] == "stripped-original"  # the path under test
    assert not [f for f in load(written).get_fields() if f.startswith("exif-ifd3-")]
    assert b"GPS" not in written.read_bytes()


@pytest.mark.parametrize("quality", [30, 90])
def test_compress_at_a_given_quality_reports_the_similarity_of_what_it_wrote(
    processor, tmp_path, quality
):
    source = CORPUS / "misc/rocket.jpg"
    result, written = run(processor, "images/compress", source, tmp_path, quality=quality)
    assert result.metadata["strategy"] == "reencoded"
    measured = skimage_ssim(pyvips.Image.new_from_file(str(source)), load(written))
    # Another window and code path than the processor's: close, not equal.
    assert result.metadata["ssim"] == pytest.approx(measured, abs=0.01)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif", "gif", "tiff"])
def test_convert_writes_the_requested_format(processor, tmp_path, fmt):
    result, written = run(
        processor, "images/convert", CORPUS / "misc/logo.png", tmp_path, format=fmt
    )
    assert sniff_bytes(written.read_bytes()[:64]) == fmt == result.format
    assert (result.width, result.height) == (500, 500)


@pytest.mark.parametrize("fmt", ["webp", "avif"])
def test_lossless_conversion_keeps_every_pixel(processor, tmp_path, fmt):
    source = CORPUS / "misc/chelsea.png"
    _result, written = run(processor, "images/convert", source, tmp_path, format=fmt, lossless=True)
    original = pyvips.Image.new_from_file(str(source))
    assert (load(written) - original).abs().max() == 0


def test_an_animated_gif_keeps_its_frames_when_converted_to_webp(processor, tmp_path):
    result, written = run(
        processor, "images/convert", CORPUS / "edge/dispose_bgnd_rgba.gif", tmp_path, format="webp"
    )
    assert pyvips.Image.new_from_buffer(written.read_bytes(), "", n=-1).get("n-pages") == 5
    assert result.metadata["frames"] == 5


@pytest.mark.parametrize(
    ("fit", "expected"),
    [
        ("inside", (400, 250)),
        ("outside", (640, 400)),
        ("cover", (400, 400)),
        ("contain", (400, 400)),
        ("fill", (400, 400)),
    ],
)
def test_resize_fit_modes(processor, tmp_path, fit, expected):
    result, _ = run(processor, "images/resize", PHOTOS[0], tmp_path, width=400, height=400, fit=fit)
    assert (result.width, result.height) == expected


def test_resize_never_enlarges_unless_asked(processor, tmp_path):
    rocket = CORPUS / "misc/rocket.jpg"
    kept, _ = run(processor, "images/resize", rocket, tmp_path, width=2000)
    enlarged, _ = run(processor, "images/resize", rocket, tmp_path, width=2000, upscale=True)
    assert (kept.width, kept.height) == (640, 427)
    assert (enlarged.width, enlarged.height) == (2000, 1334)


def test_contain_pads_with_a_transparent_background_when_asked(processor, tmp_path):
    _result, written = run(
        processor,
        "images/resize",
        CORPUS / "misc/rocket.jpg",
        tmp_path,
        width=300,
        height=300,
        fit="contain",
        background="#00000000",
        format="png",
    )
    output = load(written)
    assert output.hasalpha()
    assert output(0, 0)[3] == 0
    assert output(150, 150)[3] == 255


def test_crop_cuts_the_exact_rectangle(processor, tmp_path):
    source = CORPUS / "misc/chelsea.png"
    _result, written = run(
        processor, "images/crop", source, tmp_path, left=10, top=20, width=100, height=50
    )
    expected = pyvips.Image.new_from_file(str(source)).crop(10, 20, 100, 50)
    assert (load(written) - expected).abs().max() == 0


def test_crop_outside_the_image_is_a_clear_error(processor, tmp_path):
    with pytest.raises(ProcessingError, match="outside the 451x300 image"):
        run(
            processor,
            "images/crop",
            CORPUS / "misc/chelsea.png",
            tmp_path,
            left=400,
            top=0,
            width=100,
            height=50,
        )


@pytest.mark.parametrize("gravity", ["attention", "entropy", "centre", "north", "west"])
def test_crop_by_aspect_ratio_keeps_the_largest_region(processor, tmp_path, gravity):
    result, _ = run(
        processor, "images/crop", PHOTOS[1], tmp_path, aspect_ratio="1:1", gravity=gravity
    )
    assert (result.width, result.height) == (1600, 1600)


def test_rotate_quarter_turns_are_exact_and_swap_the_axes(processor, tmp_path):
    source = CORPUS / "misc/chelsea.png"
    result, written = run(processor, "images/rotate", source, tmp_path, angle=90)
    assert (result.width, result.height) == (300, 451)
    assert (load(written) - pyvips.Image.new_from_file(str(source)).rot90()).abs().max() == 0


def test_rotate_by_any_angle_fills_the_corners(processor, tmp_path):
    result, written = run(
        processor,
        "images/rotate",
        CORPUS / "misc/chelsea.png",
        tmp_path,
        angle=45,
        background="#ff0000",
    )
    corner = load(written)(0, 0)
    assert result.width > 451
    assert corner[0] == 255
    assert corner[1] == 0


def test_exif_orientation_is_applied(processor, tmp_path):
    source = CORPUS / "edge/hopper_orientation_6.jpg"
    raw = pyvips.Image.new_from_file(str(source))
    _, written = run(processor, "images/convert", source, tmp_path, format="png")
    upright = load(written)
    assert (upright - raw.rot90()).abs().avg() < 3 < (upright - raw).abs().avg()


@pytest.mark.parametrize(
    ("source", "target", "shrink"),
    [
        ((2560, 1600), (512, 320), 4),  # factor 5: 1/4 scale, then Lanczos
        ((5120, 2880), (500, 281), 8),
        ((2560, 1600), (1280, 800), 2),
        ((2560, 1600), (1281, 801), 1),  # just under 2: decode in full
        ((1600, 2560), (320, 512), 4),
    ],
)
def test_jpeg_shrink_on_load_stays_at_or_above_the_target(source, target, shrink):
    info = ImageInfo(format="jpeg", mime_type="image/jpeg", width=source[0], height=source[1])
    jpeg = Source(Path("x.jpg"), "jpeg", info, 1, 3, "srgb", 0)
    assert jpeg_shrink(jpeg, *target) == shrink
    assert jpeg_shrink(attrs.evolve(jpeg, format="png"), *target) == 1


def test_a_shrunk_on_load_jpeg_is_upright_and_close_to_libvips_thumbnail(tmp_path):
    # An EXIF-rotated photo shrunk by 4 on load must be turned upright after the
    # shrink and resized to the display size, and differ from libvips' own
    # thumbnail (shrink 2, then Lanczos) only by resampling.
    rotated = tmp_path / "rotated.jpg"
    photo = pyvips.Image.new_from_file(str(PHOTOS[0])).copy()
    photo.set_type(pyvips.GValue.gint_type, "orientation", 6)
    photo.jpegsave(str(rotated), Q=95)
    source = open_source(rotated, MAX_PIXELS, 1)
    assert (source.info.width, source.info.height) == (1600, 2560)
    assert jpeg_shrink(source, 320, 512) == 4
    ours = thumbnail(source, 320, 512)
    libvips = pyvips.Image.thumbnail(str(rotated), 320, height=512, size="force")
    assert (ours.width, ours.height) == (libvips.width, libvips.height) == (320, 512)
    assert (ours - libvips).abs().avg() < 3 < (ours - libvips.flip("horizontal")).abs().avg()


def _rotated_progressive(tmp_path: Path) -> Path:
    rotated = tmp_path / "rotated-progressive.jpg"
    photo = pyvips.Image.new_from_file(str(PHOTOS[0])).copy()
    photo.set_type(pyvips.GValue.gint_type, "orientation", 6)
    photo.jpegsave(str(rotated), Q=90, interlace=True, subsample_mode="off")
    return rotated


@pytest.mark.parametrize("name", ["volna", "rotated"])
def test_a_progressive_jpeg_shrunk_by_8_is_read_from_its_dc_scans_with_the_same_result(
    processor, tmp_path, monkeypatch, name
):
    # Resizing by 8 or more reads a progressive JPEG through jpeg_scans.dc_scans_only;
    # the output must be byte for byte the one decoding the whole file gives.
    source = (
        CORPUS / "large/volna-5120x2880.jpg" if name == "volna" else _rotated_progressive(tmp_path)
    )
    rewrites: list[bool] = []

    def spy(data: bytes) -> bytes | None:
        reduced = dc_scans_only(data)
        rewrites.append(reduced is not None)
        return reduced

    monkeypatch.setattr(vips_io, "dc_scans_only", spy)
    result, reduced = run(processor, "images/resize", source, tmp_path, width=200, format="jpeg")
    monkeypatch.setattr(vips_io, "dc_scans_only", lambda _: None)
    (tmp_path / "whole").mkdir()
    _, whole = run(processor, "images/resize", source, tmp_path / "whole", width=200, format="jpeg")
    assert rewrites == [True]
    assert reduced.read_bytes() == whole.read_bytes()
    assert result.width == 200
    assert (result.width < result.height) == (name == "rotated")


def test_thumbnail_defaults_to_a_256_box(processor, tmp_path):
    result, _ = run(processor, "images/thumbnail", CORPUS / "large/volna-5120x2880.jpg", tmp_path)
    assert (result.width, result.height) == (256, 144)


def test_outputs_carry_no_gps_or_exif_by_default(processor, tmp_path):
    result, written = run(
        processor, "images/resize", CORPUS / "edge/exif_gps.jpg", tmp_path, width=4
    )
    output = load(written)
    assert not output.get_typeof("exif-data")
    assert "exif-ifd3-GPSLatitude" in result.metadata["removed"]


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_keep_metadata_keeps_exif_but_never_gps(processor, tmp_path, fmt):
    _, written = run(
        processor,
        "images/convert",
        CORPUS / "edge/exif_gps.jpg",
        tmp_path,
        format=fmt,
        keep_metadata=True,
    )
    fields = load(written).get_fields()
    assert "exif-ifd0-Make" in fields
    assert not [f for f in fields if f.startswith("exif-ifd3-")]


def test_strip_metadata_reports_and_removes_every_field(processor, tmp_path):
    source = CORPUS / "edge/exif_gps.jpg"
    result, written = run(processor, "images/strip-metadata", source, tmp_path)
    assert {"exif-data", "exif-ifd0-Make", "exif-ifd3-GPSLatitude"} <= set(
        result.metadata["removed"]
    )
    assert not [f for f in load(written).get_fields() if f.startswith("exif-")]
    # An upright JPEG is stripped without re-encoding: same pixels, bit for bit.
    assert (load(written) - pyvips.Image.new_from_file(str(source))).abs().max() == 0


@pytest.mark.parametrize(("keep_icc", "has_icc"), [(True, True), (False, False)])
def test_strip_metadata_keeps_the_colour_profile_only_when_asked(
    processor, tmp_path, keep_icc, has_icc
):
    result, written = run(
        processor,
        "images/strip-metadata",
        CORPUS / "edge/icc_profile.png",
        tmp_path,
        keep_icc=keep_icc,
    )
    assert bool(load(written).get_typeof("icc-profile-data")) is has_icc
    assert ("icc-profile-data" in result.metadata["removed"]) is not has_icc


def test_metadata_reads_exif_colour_profile_dominant_colour_and_blurhash(processor, tmp_path):
    result, written = run(processor, "images/metadata", CORPUS / "edge/exif_gps.jpg", tmp_path)
    document = json.loads(written.read_bytes())
    assert result.format == "json"
    assert result.mime_type == "application/json"
    assert document["exif"]["Make"]
    assert document["has_gps"] is True
    assert (document["width"], document["height"], document["frames"]) == (8, 8, 1)
    assert len(document["dominant_color"]) == 7
    assert document["dominant_color"].startswith("#")
    profile, _ = run(processor, "images/metadata", CORPUS / "edge/icc_profile.png", tmp_path)
    assert profile.metadata["icc_profile"]["description"] == "sRGB IEC61966-2.1"
    assert profile.metadata["has_alpha"] is True
    photo, _ = run(processor, "images/metadata", PHOTOS[0], tmp_path)
    assert len(photo.metadata["blurhash"]) == 28  # 4x3 components


def test_metadata_of_a_rotated_photo_gives_the_upright_size(processor, tmp_path):
    source = tmp_path / "portrait.jpg"
    image = pyvips.Image.new_from_file(str(CORPUS / "misc/rocket.jpg")).copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    image.jpegsave(str(source), keep="exif")
    result, _ = run(processor, "images/metadata", source, tmp_path)
    assert (
        result.metadata["width"],
        result.metadata["height"],
        result.metadata["orientation"],
    ) == (427, 640, 6)


def test_watermark_with_an_image_mark(processor, tmp_path):
    mark = base64.b64encode((CORPUS / "misc/logo.png").read_bytes()).decode()
    source = CORPUS / "misc/rocket.jpg"
    result, written = run(
        processor,
        "images/watermark",
        source,
        tmp_path,
        image=mark,
        opacity=1.0,
        position="northwest",
    )
    stamped, original = load(written), pyvips.Image.new_from_file(str(source))
    assert (result.width, result.height) == (640, 427)
    # The logo (160 px wide) sits 16 px from the top-left corner and nowhere else.
    assert (stamped.crop(16, 16, 160, 160) - original.crop(16, 16, 160, 160)).abs().avg() > 20
    # Elsewhere only the JPEG re-encoding differs.
    assert (stamped.crop(400, 250, 200, 150) - original.crop(400, 250, 200, 150)).abs().avg() < 6


def test_watermark_tiles_text_and_escapes_markup(processor, tmp_path):
    result, _written = run(
        processor,
        "images/watermark",
        CORPUS / "misc/chelsea.png",
        tmp_path,
        text="<b>&amp; not markup",
        position="tile",
        opacity=1.0,
        color="#ff0000",
        size=0.2,
    )
    assert (result.width, result.height) == (451, 300)


@pytest.mark.parametrize(
    ("mark", "error"),
    [
        (
            base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg"/>').decode(),
            UnsupportedMediaType,
        ),
        ("AAAAA", ProcessingError),  # the characters of base64, not its length
        ("not base64!", InvalidParameter),  # the processor validates like the API
    ],
)
def test_a_watermark_image_goes_through_the_same_allow_list(processor, tmp_path, mark, error):
    params = find_product("images/watermark").validate({"image": "AAAA"}) | {"image": mark}
    request = ProcessingRequest(
        "images/watermark", params, CORPUS / "misc/rocket.jpg", tmp_path / "w", MAX_PIXELS, 1
    )
    with pytest.raises(error):
        processor.process(request)


def test_a_watermark_image_bomb_is_too_large(processor, tmp_path):
    mark = base64.b64encode((CORPUS / "edge/decompression_bomb.gif").read_bytes()).decode()
    with pytest.raises(ImageTooLarge):
        run(processor, "images/watermark", CORPUS / "misc/rocket.jpg", tmp_path, image=mark)


# ------------------------------------------------------------------------- the catalogue's defaults

_ROCKET, _GPS, _ICC = "misc/rocket.jpg", "edge/exif_gps.jpg", "edge/icc_profile.png"
_TEXT = {"text": "imagecore"}
#: For each product parameter the catalogue gives a default: an input and the
#: other parameters under which that one changes the output.
WHERE_EACH_DEFAULT_SHOWS = {
    ("images/compress", "target_ssim"): (_ROCKET, {}),
    ("images/compress", "keep_metadata"): (_GPS, {}),
    ("images/convert", "lossless"): (_ICC, {"format": "webp"}),
    ("images/convert", "keep_metadata"): (_GPS, {"format": "jpeg"}),
    ("images/resize", "fit"): (_ROCKET, {"width": 40, "height": 40}),
    ("images/resize", "upscale"): (_ICC, {"width": 80}),
    ("images/resize", "background"): (_ROCKET, {"width": 40, "height": 40, "fit": "contain"}),
    ("images/resize", "keep_metadata"): (_GPS, {"width": 4}),
    ("images/crop", "gravity"): (_ROCKET, {"aspect_ratio": "1:1"}),
    ("images/crop", "keep_metadata"): (_GPS, {"aspect_ratio": "1:1"}),
    ("images/rotate", "angle"): (_ROCKET, {}),
    ("images/rotate", "flip"): (_ROCKET, {}),
    ("images/rotate", "auto_orient"): ("edge/hopper_orientation_6.jpg", {}),
    ("images/rotate", "background"): (_ROCKET, {"angle": 30}),
    ("images/rotate", "keep_metadata"): (_GPS, {}),
    ("images/thumbnail", "width"): (_ROCKET, {}),
    ("images/thumbnail", "height"): (_ROCKET, {}),
    ("images/thumbnail", "fit"): (_ROCKET, {}),
    ("images/strip-metadata", "keep_icc"): (_ICC, {}),
    ("images/watermark", "position"): (_ROCKET, _TEXT),
    ("images/watermark", "opacity"): (_ROCKET, _TEXT),
    ("images/watermark", "size"): (_ROCKET, _TEXT),
    ("images/watermark", "color"): (_ROCKET, _TEXT),
    ("images/watermark", "margin"): (_ROCKET, _TEXT),
    ("images/watermark", "keep_metadata"): (_GPS, _TEXT),
}


def _another_value(parameter: Parameter) -> object:
    """A valid value other than the parameter's default."""
    default = parameter.default
    if parameter.kind is Kind.BOOLEAN:
        return not default
    if parameter.kind is Kind.CHOICE:
        return next(choice for choice in parameter.choices if choice != default)
    if parameter.kind is Kind.COLOR:
        return "#000000" if default != "#000000" else "#ff0000"
    halfway = (default + (parameter.minimum or 0)) / 2
    return int(halfway) if parameter.kind is Kind.INTEGER else halfway


def test_every_default_of_the_catalogue_is_checked_where_it_shows():
    defaulted = {
        (product.key, parameter.name)
        for product in CATALOGUE
        for parameter in product.parameters
        if parameter.default is not None
    }
    assert defaulted == set(WHERE_EACH_DEFAULT_SHOWS)


@pytest.mark.parametrize(
    ("key", "name"), sorted(WHERE_EACH_DEFAULT_SHOWS), ids=lambda part: part.split("/")[-1]
)
def test_an_omitted_parameter_means_the_catalogues_default(processor, tmp_path, key, name):
    # The parameters go to the processor as a client wrote them, unvalidated:
    # an omitted one must mean the catalogue's default, whatever the caller.
    sample, context = WHERE_EACH_DEFAULT_SHOWS[key, name]
    [parameter] = [p for p in find_product(key).parameters if p.name == name]

    def output(params: dict[str, object], tag: str) -> bytes:
        destination = tmp_path / tag
        request = ProcessingRequest(key, params, CORPUS / sample, destination, MAX_PIXELS, 100)
        processor.process(request)
        return destination.read_bytes()

    omitted = output(context, "omitted")
    assert omitted == output(context | {name: parameter.default}, "default")
    assert omitted != output(context | {name: _another_value(parameter)}, "another")


# ----------------------------------------------------------------------------- container stripping


@pytest.mark.parametrize(
    ("sample", "fmt"),
    [
        ("edge/exif_gps.jpg", "jpeg"),
        ("misc/chelsea.png", "png"),
        ("edge/anim_frame1.webp", "webp"),
        ("misc/no_time_for_that_tiny.gif", "gif"),
    ],
)
def test_container_stripping_keeps_the_pixels_bit_for_bit(sample, fmt):
    configure_vips()
    data = (CORPUS / sample).read_bytes()
    stripped = strip(data, fmt, Keep(icc=False))
    assert stripped is not None
    assert len(stripped.data) <= len(data)
    frames = {"n": -1} if fmt in {"gif", "webp"} else {}
    before = pyvips.Image.new_from_buffer(data, "", **frames)
    after = pyvips.Image.new_from_buffer(stripped.data, "", **frames)
    assert (after - before).abs().max() == 0
    assert not [f for f in after.get_fields() if f.startswith(("exif-", "xmp-", "icc-"))]


def test_container_stripping_refuses_what_does_not_parse():
    assert strip(b"\xff\xd8\xff\xe1\x00", "jpeg", Keep()) is None
    assert strip(b"not a png", "png", Keep()) is None


def test_container_stripping_rebuilds_the_segments_a_payload_could_hide_in():
    jpeg = (CORPUS / "misc/rocket.jpg").read_bytes()
    php = b"<?php system($_GET['c']); ?>"
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x02\x02" + bytes(12) + php  # 2x2 thumbnail, tail
    adobe = b"Adobe\x00\x64\x00\x00\x00\x00\x01" + php
    segments = b"".join(
        bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload
        for marker, payload in ((0xE0, jfif), (0xEE, adobe))
    )
    stripped = strip(jpeg[:2] + segments + jpeg[2:], "jpeg", Keep())
    assert stripped is not None
    assert php not in stripped.data
    assert stripped.data.startswith(
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    )
    assert {"APP0 JFIF extra data", "APP14 Adobe extra data"} <= set(stripped.removed)
    assert pyvips.Image.new_from_buffer(stripped.data, "").avg() > 0


def test_container_stripping_leaves_an_unknown_critical_png_chunk_to_the_decoder():
    png = (CORPUS / "misc/logo.png").read_bytes()
    iend = png.rindex(b"IEND") - 4
    odd = (4).to_bytes(4, "big") + b"EVIL" + b"<?p?" + bytes(4)
    assert strip(png[:iend] + odd + png[iend:], "png", Keep()) is None


def test_an_output_longer_than_its_format_allows_is_a_clear_error(processor, tmp_path):
    source = tmp_path / "strip.png"
    pyvips.Image.black(200, 2).pngsave(str(source))
    with pytest.raises(ImageTooLarge, match=r"WEBP holds at most 16383 pixels a side.*16384x164"):
        run(processor, "images/resize", source, tmp_path, width=16384, upscale=True, format="webp")
    result, _ = run(processor, "images/resize", source, tmp_path, width=16383, upscale=True)
    assert result.width == 16383


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1/160 (1/160 sec., Rational, 1 components, 8 bytes)", "1/160"),
        ("2 (Internal error (unknown value 2), Short, 1 components, 2 bytes)", "2"),
        ("Canon (EOS) (Canon (EOS), ASCII, 12 components, 12 bytes)", "Canon (EOS)"),
        ("Version 1.0 (Version 1.0, Undefined, 4 components, 4 bytes)", "Version 1.0"),
        ("no description at all", "no description at all"),
    ],
)
def test_an_exif_string_reads_as_its_value(raw: str, value: str) -> None:
    assert exif_value(raw) == value
