"""Reading, metadata policy and writing for the libvips adapter.

Reading: `open_source` sniffs, checks declared pixels and frames from the
header (and, for GIF, from every frame descriptor) and returns a `Source`;
only then may `decode` or `thumbnail` touch pixels, always through the
loader of the sniffed format and with ``fail_on="truncated"`` (``"error"``
for TIFF: libvips only warns when libtiff finds a strip cut short, and would
hand back black pixels for a truncated file).

Writing: `encode` calls one saver per output format with our settings
(mozjpeg's trellis and friends, WebP smart subsampling, AVIF through
``heifsave(compression="av1")``). Metadata follows one policy, applied by
`metadata_policy`: by default only the ICC profile is written; with
``keep_metadata`` EXIF/XMP/IPTC are kept but the GPS IFD is deleted field by
field (libvips rebuilds the EXIF blob from the remaining ``exif-ifd*``
fields when saving) and XMP that mentions GPS is dropped whole.

HEIF (HEVC) is read but cannot be written by this libvips build, so an image
product given HEIF writes JPEG unless ``format`` says otherwise. Multi-frame
GIF and WebP keep their frames only where `ANIMATED_OUTPUTS` allows; every
other product works on the first frame (or TIFF page, or HEIF primary image).

Why one module: decoding and encoding, each format's options and the
metadata policy are one table of libvips calls the products share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import attrs
import pyvips

from adapters.vips.guard import scan_gif, sniff_format
from adapters.vips.jpeg_scans import dc_scans_only
from imagecore.errors import CorruptImage, ImageTooLarge, ProcessingError
from imagecore.formats import MIME_TYPES
from imagecore.model import ImageInfo

__all__ = [
    "ANIMATED_OUTPUTS",
    "DEFAULT_QUALITY",
    "MATTE",
    "MAX_SIDE",
    "Encoded",
    "Source",
    "buffer_loader",
    "decode",
    "decode_buffer",
    "encode",
    "frame_height",
    "jpeg_shrink",
    "metadata_policy",
    "open_source",
    "output_format",
    "parse_colour",
    "prepare_for",
    "removed_fields",
    "thumbnail",
]

#: What transparency becomes in a JPEG, and the padding of a product that has
#: no ``background`` parameter (thumbnail's ``contain``).
MATTE: Final = "#ffffff"
#: Output formats that carry every frame of an animated input.
ANIMATED_OUTPUTS: Final = frozenset({"gif", "webp"})
DEFAULT_QUALITY: Final = {"jpeg": 85, "webp": 82, "avif": 60}
#: The longest side (of one frame) each output format can hold.
MAX_SIDE: Final = {"jpeg": 65535, "webp": 16383, "gif": 65535}
#: JPEG saver options for every output: progressive, Huffman tables optimised,
#: mozjpeg's ImageMagick quantisation table and its deringing (all nearly free).
JPEG_OPTIONS: Final = {
    "optimize_coding": True,
    "overshoot_deringing": True,
    "quant_table": 3,
    "interlace": True,
}
#: What ``images/compress`` adds, where bytes matter more than time: trellis
#: quantisation and optimised progressive scans, smaller files for a slower encode
#: (docs/decisions/0016-jpeg-thorough-encode-for-compress.md).
JPEG_THOROUGH: Final = {**JPEG_OPTIONS, "trellis_quant": True, "optimize_scans": True}
_LOADERS: Final = {
    "jpeg": "jpegload",
    "png": "pngload",
    "webp": "webpload",
    "gif": "gifload",
    "tiff": "tiffload",
    "avif": "heifload",
    "heif": "heifload",
}
_FAIL_ON: Final = {"tiff": "error"}
#: The JPEG scale at which a pixel comes from a block's DC coefficient alone.
_JPEG_DC_SHRINK: Final = 8
_EIGHT_BIT_ONLY: Final = frozenset({"jpeg", "webp", "gif", "avif"})
_KEEP_ALL_BUT_GAINMAP: Final = (
    pyvips.enums.ForeignKeep.EXIF
    | pyvips.enums.ForeignKeep.XMP
    | pyvips.enums.ForeignKeep.IPTC
    | pyvips.enums.ForeignKeep.ICC
    | pyvips.enums.ForeignKeep.OTHER
)
_PRIVATE_PREFIXES: Final = (
    "exif-",
    "xmp-data",
    "iptc-data",
    "jpeg-thumbnail-data",
    "png-comment-",
    "gif-comment",
)


@attrs.frozen
class Source:
    """An input file that passed the sniff and the header limits."""

    path: Path
    format: str
    info: ImageInfo
    orientation: int
    bands: int
    interpretation: str
    size: int
    progressive: bool = False


@attrs.frozen
class Encoded:
    """What a product made: the bytes to write and what to report about them."""

    data: bytes
    format: str
    width: int | None
    height: int | None
    metadata: dict[str, Any] = attrs.field(factory=dict)


def open_source(path: Path, max_pixels: int, max_frames: int) -> Source:
    """Sniff, read the header and check the limits; decode no pixel.

    ``info`` gives the dimensions as displayed (after EXIF orientation).
    """
    fmt = sniff_format(path)
    if fmt == "gif":
        with path.open("rb") as stream:
            scan_gif(stream, max_pixels, max_frames)
    header = _call(_LOADERS[fmt], str(path), access="sequential")
    _check_loader(header, fmt)
    width, height = int(header.width), int(header.height)
    frames = _pages(header)
    if fmt in ("avif", "heif") and header.get_typeof("heif-compression"):
        fmt = "avif" if header.get("heif-compression") == "av1" else "heif"
    if frames > max_frames:
        raise ImageTooLarge(f"the image has {frames} frames, more than the limit of {max_frames}")
    if width * height * frames > max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} pixels in {frames} frame(s), "
            f"more than the limit of {max_pixels}"
        )
    orientation = int(header.get("orientation")) if header.get_typeof("orientation") else 1
    if orientation >= 5:  # noqa: PLR2004 - EXIF orientations 5-8 swap the axes
        width, height = height, width
    return Source(
        path=path,
        format=fmt,
        info=ImageInfo(
            format=fmt, mime_type=MIME_TYPES[fmt], width=width, height=height, frames=frames
        ),
        orientation=orientation,
        bands=int(header.bands),
        interpretation=str(header.interpretation),
        size=path.stat().st_size,
        progressive=fmt == "jpeg"
        and bool(header.get_typeof("interlaced"))
        and bool(header.get("interlaced")),
    )


def decode(source: Source, *, all_frames: bool = False, autorotate: bool = True) -> pyvips.Image:
    """Decode the pixels (first frame unless ``all_frames``), upright unless told not to."""
    options: dict[str, Any] = {"fail_on": _fail_on(source.format)}
    if all_frames and source.info.frames > 1 and source.format in ("gif", "webp"):
        options["n"] = -1
    image = _call(_LOADERS[source.format], str(source.path), **options)
    _check_loader(image, source.format)
    if autorotate and source.orientation != 1:
        image = image.autorot()
    return image


def thumbnail(source: Source, width: int, height: int) -> pyvips.Image:
    """Resize to exactly ``width`` x ``height``, shrinking on load where the format allows.

    A JPEG is decoded at the largest of 1/2, 1/4 and 1/8 scale that stays at
    or above the target on both axes (libjpeg's DCT scaling, as imgproxy and
    Pillow's ``draft`` do), then Lanczos-resized the rest of the way. libvips'
    own ``thumbnail`` keeps a factor of two for the final resize, which costs
    a bigger decode, for slightly better pixels (the trade is measured in
    docs/decisions/0015-jpeg-decode-at-reduced-scale.md).
    """
    shrink = jpeg_shrink(source, width, height)
    if shrink > 1:
        image = _jpeg_at_scale(source, shrink)
        return image.thumbnail_image(width, height=height, size="force")
    stream = pyvips.Source.new_from_file(str(source.path))
    image = pyvips.Image.thumbnail_source(
        stream,
        width,
        height=height,
        size="force",
        option_string=f"fail_on={_fail_on(source.format)}",
    )
    _check_loader(image, source.format)
    return image


def _jpeg_at_scale(source: Source, shrink: int) -> pyvips.Image:
    """Decode a JPEG at 1/``shrink`` scale; a progressive one at 1/8 from its DC scans.

    The pixels are the same; the work is far less on a large progressive photo
    (`adapters.vips.jpeg_scans`; docs/decisions/0015-jpeg-decode-at-reduced-scale.md).
    """
    options = {"shrink": shrink, "access": "sequential", "fail_on": _fail_on(source.format)}
    reduced = None
    if shrink == _JPEG_DC_SHRINK and source.progressive:
        reduced = dc_scans_only(source.path.read_bytes())
    if reduced is None:
        image = _call("jpegload", str(source.path), **options)
    else:
        image = _call("jpegload_buffer", reduced, **options)
    _check_loader(image, source.format)
    return image


def jpeg_shrink(source: Source, width: int, height: int) -> int:
    """The JPEG shrink-on-load factor for a ``width`` x ``height`` target (1: none)."""
    if source.format != "jpeg":
        return 1
    factor = min(source.info.width / width, source.info.height / height)
    return next((shrink for shrink in (8, 4, 2) if factor >= shrink), 1)


def buffer_loader(fmt: str) -> str:
    """The libvips operation that decodes ``fmt`` from memory."""
    return _LOADERS[fmt] + "_buffer"


def decode_buffer(data: bytes, fmt: str, max_pixels: int, max_frames: int) -> pyvips.Image:
    """Decode an in-memory image of a sniffed format with the same limits as a file."""
    loader = buffer_loader(fmt)
    header = _call(loader, data, access="sequential")
    frames = _pages(header)
    if frames > max_frames or int(header.width) * int(header.height) * frames > max_pixels:
        raise ImageTooLarge("the embedded image exceeds the pixel or frame limit")
    image = _call(loader, data, fail_on=_fail_on(fmt))
    if image.get_typeof("orientation") and int(image.get("orientation")) != 1:
        image = image.autorot()
    return image


def output_format(source: Source, requested: str | None) -> str:
    """The format to write: the one asked for, else the input's (HEIF becomes JPEG)."""
    if requested:
        return requested
    return "jpeg" if source.format == "heif" else source.format


def frame_height(image: pyvips.Image) -> int:
    """The height of one frame of a possibly multi-frame image."""
    if image.get_typeof("page-height"):
        return int(image.get("page-height"))
    return int(image.height)


def metadata_policy(
    image: pyvips.Image, *, keep_metadata: bool
) -> tuple[pyvips.Image, int, list[str]]:
    """Apply the metadata policy; return the image, the savers' ``keep`` flags and what goes.

    GPS never survives: with ``keep_metadata`` the GPS IFD fields are deleted
    (libvips rebuilds EXIF from what is left) and XMP naming GPS is removed.
    """
    removed = removed_fields(image, keep_metadata=keep_metadata, keep_icc=True)
    if not keep_metadata:
        return image, int(pyvips.enums.ForeignKeep.ICC), removed
    image = image.copy()
    for field in image.get_fields():
        if field.startswith("exif-ifd3-") or (
            field == "xmp-data" and b"GPS" in _blob(image, field)
        ):
            image.remove(field)
    return image, int(_KEEP_ALL_BUT_GAINMAP), removed


def removed_fields(image: pyvips.Image, *, keep_metadata: bool, keep_icc: bool) -> list[str]:
    """The libvips names of the metadata fields the policy drops from ``image``."""
    removed = []
    for field in image.get_fields():
        if field == "icc-profile-data":
            if not keep_icc:
                removed.append(field)
        elif keep_metadata:
            if field.startswith("exif-ifd3-") or (
                field == "xmp-data" and b"GPS" in _blob(image, field)
            ):
                removed.append(field)
        elif field.startswith(_PRIVATE_PREFIXES):
            removed.append(field)
    return removed


def parse_colour(colour: str) -> tuple[list[float], float]:
    """``#rrggbb[aa]`` as an RGB list and an opacity from 0 to 1."""
    digits = colour.lstrip("#")
    rgb = [float(int(digits[i : i + 2], 16)) for i in (0, 2, 4)]
    alpha = int(digits[6:8], 16) / 255 if len(digits) == 8 else 1.0  # noqa: PLR2004 - #rrggbbaa
    return rgb, alpha


def prepare_for(image: pyvips.Image, fmt: str, background: str = MATTE) -> pyvips.Image:
    """Bring pixels into a form the saver of ``fmt`` writes faithfully."""
    interpretation = str(image.interpretation)
    if interpretation == "cmyk":
        if fmt not in ("jpeg", "tiff"):
            image = image.icc_transform("srgb", embedded=True, input_profile="cmyk")
    elif interpretation not in ("srgb", "b-w", "rgb16", "grey16"):
        image = image.colourspace("srgb")
    if fmt in _EIGHT_BIT_ONLY and image.format != "uchar":
        grey = image.interpretation in ("b-w", "grey16")
        image = image.colourspace("b-w" if grey else "srgb").cast("uchar")
    if fmt == "jpeg" and image.hasalpha():
        rgb, _ = parse_colour(background)
        colour = rgb if image.bands > 2 else [sum(rgb) / 3]  # noqa: PLR2004 - grey+alpha
        image = image.flatten(background=colour)
    return image


def encode(  # noqa: PLR0913 - one knob per saver option we expose
    image: pyvips.Image,
    fmt: str,
    *,
    keep: int,
    quality: int | None = None,
    lossless: bool = False,
    effort: int = 4,
    subsample: str = "auto",
    thorough: bool = False,
) -> bytes:
    """Encode with our settings for ``fmt``; ``quality`` None means the format's default.

    ``thorough`` spends encoding time for bytes (``images/compress``): mozjpeg's
    trellis and scan optimisation, WebP's sharp chroma subsampling.
    """
    width, height = int(image.width), frame_height(image)
    if max(width, height) > MAX_SIDE.get(fmt, max(width, height)):
        raise ImageTooLarge(
            f"{fmt.upper()} holds at most {MAX_SIDE[fmt]} pixels a side; this output would be "
            f"{width}x{height}"
        )
    q = quality or DEFAULT_QUALITY.get(fmt, 90)
    if fmt == "jpeg":
        options = JPEG_THOROUGH if thorough else JPEG_OPTIONS
        data = image.jpegsave_buffer(Q=q, subsample_mode=subsample, keep=keep, **options)
    elif fmt == "png":
        palette = {"palette": True, "Q": quality, "effort": effort} if quality else {}
        data = image.pngsave_buffer(compression=9, filter="all", keep=keep, **palette)
    elif fmt == "webp":
        data = image.webpsave_buffer(
            Q=q, lossless=lossless, effort=effort, smart_subsample=thorough, keep=keep
        )
    elif fmt == "avif":
        data = image.heifsave_buffer(
            compression="av1",
            Q=q,
            lossless=lossless,
            effort=effort,
            bitdepth=8,
            subsample_mode="off" if lossless else "auto",
            keep=keep,
        )
    elif fmt == "gif":
        data = image.gifsave_buffer(effort=max(effort, 7), keep=keep)
    elif fmt == "tiff":
        data = image.tiffsave_buffer(compression="deflate", predictor="horizontal", keep=keep)
    else:
        raise ProcessingError(f"cannot write {fmt}")
    return bytes(data)


def _call(operation: str, *args: object, **kwargs: object) -> pyvips.Image:
    return pyvips.Operation.call(operation, *args, **kwargs)


def _fail_on(fmt: str) -> str:
    return _FAIL_ON.get(fmt, "truncated")


def _pages(image: pyvips.Image) -> int:
    return int(image.get("n-pages")) if image.get_typeof("n-pages") else 1


def _check_loader(image: pyvips.Image, fmt: str) -> None:
    # Belt and braces: the loader libvips picked must be the one our sniff named.
    loader = str(image.get("vips-loader")) if image.get_typeof("vips-loader") else ""
    if not loader.startswith(_LOADERS[fmt]):
        raise CorruptImage(
            f"the file claims to be {fmt} but decodes as {loader or 'something else'}"
        )


def _blob(image: pyvips.Image, field: str) -> bytes:
    value = image.get(field)
    return (
        bytes(value) if isinstance(value, bytes | bytearray | memoryview) else str(value).encode()
    )
