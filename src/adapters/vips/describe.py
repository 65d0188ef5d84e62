"""The metadata and strip-metadata products: reading what a file carries, and removing it.

`describe` builds the JSON document of images/metadata from the header
fields and one small shrink-on-load thumbnail (for the dominant colour and
the BlurHash); it never decodes the full image. EXIF values are the
readable text libvips gives, without its type annotation.

`strip_metadata` removes EXIF, XMP, IPTC, comments and (unless kept) the ICC
profile. An upright JPEG, PNG, WebP or GIF is stripped at the container level
so no pixel is re-encoded; a file that needs its EXIF orientation applied,
or is in another format, is re-encoded by libvips (JPEG/WebP at quality 95,
AVIF at 90, the others losslessly). HEIF is written as JPEG. ``removed``
lists the libvips field names that were in the input and are not in the
output.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import blurhash
import pyvips

from adapters.vips.io import (
    ANIMATED_OUTPUTS,
    Encoded,
    Source,
    decode,
    encode,
    frame_height,
    output_format,
    prepare_for,
    removed_fields,
    thumbnail,
)
from adapters.vips.metadata import Keep, strip
from imagecore.formats import MIME_TYPES

__all__ = ["describe", "exif_value", "strip_metadata"]

#: libvips' ``value (description, Type, N components, M bytes)`` form of an EXIF tag.
_EXIF_SUFFIX: Final = re.compile(r", [A-Za-z]+, \d+ components?, \d+ bytes?\)$")
_IFD_PREFIX: Final = {"ifd0": "", "ifd1": "Thumbnail.", "ifd2": "", "ifd3": "", "ifd4": "Interop."}
_REENCODE_QUALITY: Final = {"jpeg": 95, "webp": 95, "avif": 90}
_SMALL: Final = 64
_HASH_SIZE: Final = 32
_MAX_VALUE: Final = 256


def describe(source: Source) -> dict[str, Any]:
    """The images/metadata document of ``source``."""
    header = decode(source)
    fields = set(header.get_fields())
    icc = bytes(header.get("icc-profile-data")) if "icc-profile-data" in fields else b""
    small = _srgb8(_small(source, _SMALL)).copy_memory()  # read twice, streamed once
    return {
        "format": source.format,
        "mime_type": MIME_TYPES[source.format],
        "width": source.info.width,
        "height": source.info.height,
        "frames": source.info.frames,
        "orientation": source.orientation,
        "bands": source.bands,
        "interpretation": source.interpretation,
        "pixel_format": str(header.format),
        "has_alpha": bool(header.hasalpha()),
        "file_size": source.size,
        "exif": exif(header),
        "has_gps": any(name.startswith("exif-ifd3-") for name in fields),
        "xmp": "xmp-data" in fields,
        "iptc": "iptc-data" in fields,
        "icc_profile": {
            "present": bool(icc),
            "size": len(icc),
            "description": icc_description(icc),
        },
        "dominant_color": dominant_colour(small),
        "blurhash": _blurhash(small),
    }


def exif(image: pyvips.Image) -> dict[str, str]:
    """EXIF tags as readable strings by tag name (``Thumbnail.`` for the thumbnail IFD)."""
    tags: dict[str, str] = {}
    for name in image.get_fields():
        prefix, _, rest = name.partition("-")
        ifd, _, tag = rest.partition("-")
        if prefix != "exif" or ifd not in _IFD_PREFIX or not tag:
            continue
        tags[_IFD_PREFIX[ifd] + tag] = exif_value(str(image.get(name)))[:_MAX_VALUE]
    return tags


def exif_value(raw: str) -> str:
    """The value of libvips' ``value (description, Type, N components, M bytes)`` string.

    Either part may hold " (" itself (a maker's name, libexif's "Internal error
    (unknown value 2)"): a text tag repeats its value as its description, so the
    split where both halves agree wins, else the first.
    """
    suffix = _EXIF_SUFFIX.search(raw)
    if suffix is None:
        return raw
    body = raw[: suffix.start()]
    splits = [index for index in range(len(body)) if body.startswith(" (", index)]
    agreeing = (index for index in splits if body[:index] == body[index + 2 :])
    split = next(agreeing, splits[0] if splits else None)
    return raw if split is None else body[:split]


def icc_description(profile: bytes) -> str | None:
    """The ``desc`` tag of an ICC profile (v2 ``desc`` or v4 ``mluc``), if readable."""
    if len(profile) < 132:  # noqa: PLR2004 - header plus tag count
        return None
    count = int.from_bytes(profile[128:132], "big")
    for index in range(min(count, 100)):
        entry = profile[132 + 12 * index : 144 + 12 * index]
        if entry[:4] != b"desc":
            continue
        start, size = int.from_bytes(entry[4:8], "big"), int.from_bytes(entry[8:12], "big")
        tag = profile[start : start + size]
        if tag[:4] == b"desc":
            length = int.from_bytes(tag[8:12], "big")
            return tag[12 : 12 + length].split(b"\x00", 1)[0].decode("latin-1").strip() or None
        if tag[:4] == b"mluc" and len(tag) >= 28:  # noqa: PLR2004 - one record
            text_size = int.from_bytes(tag[20:24], "big")
            offset = int.from_bytes(tag[24:28], "big")
            return (
                tag[offset : offset + text_size].decode("utf-16-be", "replace").strip("\x00 ")
                or None
            )
    return None


def dominant_colour(image: pyvips.Image) -> str:
    """The mean colour of the most common 4-bit-per-channel bin, as ``#rrggbb``."""
    pixels = _pixels(image)
    opaque = [p for p in pixels if p[3] >= 128] or pixels  # noqa: PLR2004 - half transparent
    bins = Counter((r >> 4, g >> 4, b >> 4) for r, g, b, _ in opaque)
    top = bins.most_common(1)[0][0]
    members = [p for p in opaque if (p[0] >> 4, p[1] >> 4, p[2] >> 4) == top]
    mean = [round(sum(p[i] for p in members) / len(members)) for i in range(3)]
    return "#" + "".join(f"{value:02x}" for value in mean)


def strip_metadata(source: Source, params: Mapping[str, Any]) -> Encoded:
    """Run images/strip-metadata on ``source``."""
    keep_icc = params["keep_icc"]
    fmt = output_format(source, None)
    animated = source.info.frames > 1 and fmt in ANIMATED_OUTPUTS
    image = decode(source, all_frames=animated)
    removed = removed_fields(image, keep_metadata=False, keep_icc=keep_icc)
    report: dict[str, Any] = {
        "input_format": source.format,
        "input_size": source.size,
        "removed": removed,
    }
    if source.orientation == 1 and fmt == source.format:
        stripped = strip(source.path.read_bytes(), fmt, Keep(icc=keep_icc))
        if stripped is not None:
            image.avg()  # decode it all once: a corrupt file must fail, not pass through
            report.update(reencoded=False, removed_containers=list(stripped.removed))
            return Encoded(stripped.data, fmt, source.info.width, source.info.height, report)
    keep = pyvips.enums.ForeignKeep.ICC if keep_icc else pyvips.enums.ForeignKeep.NONE
    quality = _REENCODE_QUALITY.get(fmt)
    data = encode(prepare_for(image, fmt), fmt, keep=int(keep), quality=quality)
    report.update(reencoded=True, quality=quality, auto_oriented=source.orientation != 1)
    return Encoded(data, fmt, int(image.width), frame_height(image), report)


def _small(source: Source, longest: int) -> pyvips.Image:
    scale = longest / max(source.info.width, source.info.height)
    if scale >= 1:
        return decode(source)
    return thumbnail(
        source,
        max(1, round(source.info.width * scale)),
        max(1, round(source.info.height * scale)),
    )


def _srgb8(image: pyvips.Image) -> pyvips.Image:
    """4-band 8-bit sRGB with alpha, whatever the input was."""
    if image.interpretation == "cmyk":
        image = image.icc_transform("srgb", embedded=True, input_profile="cmyk")
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb").cast("uchar")
    if not image.hasalpha():
        image = image.bandjoin_const([255])
    return image.extract_band(0, n=4)


def _pixels(image: pyvips.Image) -> list[tuple[int, int, int, int]]:
    data = bytes(image.write_to_memory())
    return [(data[i], data[i + 1], data[i + 2], data[i + 3]) for i in range(0, len(data), 4)]


def _blurhash(image: pyvips.Image) -> str:
    small = image.thumbnail_image(_HASH_SIZE, height=_HASH_SIZE).flatten(background=[255, 255, 255])
    width, height = int(small.width), int(small.height)
    data = bytes(small.cast("uchar").write_to_memory())
    rows = [
        [[data[(y * width + x) * 3 + c] for c in range(3)] for x in range(width)]
        for y in range(height)
    ]
    across, down = (4, 3) if width >= height else (3, 4)
    return str(blurhash.encode(rows, across, down))
