"""The watermark product: a text or an image stamped onto the picture.

The mark is built as an RGBA image ``size`` x the picture's width wide, its
alpha scaled by ``opacity``, then composited at a gravity position
``margin`` pixels from the edges, or repeated over the whole picture
(``tile``, with ``margin`` between copies). Text is rendered by Pango
through ``pyvips.Image.text``; it is escaped first because Pango reads
markup and a caller's ``<`` must not become a tag. An image mark is
untrusted too: it is decoded only after the same magic-byte allow-list and
pixel limits as an upload.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
from collections.abc import Mapping
from typing import Any, Final

import pyvips

from adapters.vips.guard import scan_gif, sniff_bytes
from adapters.vips.io import Source, decode, decode_buffer, parse_colour
from imagecore.errors import ProcessingError
from imagecore.formats import SNIFF_BYTES

__all__ = ["watermark"]

_MAX_MARK_BYTES: Final = 1024 * 1024
_MAX_MARK_PIXELS: Final = 25_000_000
_PROBE_DPI: Final = 72
_MAX_DPI: Final = 4000
_PLACES: Final = {
    "centre": (0.5, 0.5),
    "north": (0.5, 0.0),
    "south": (0.5, 1.0),
    "east": (1.0, 0.5),
    "west": (0.0, 0.5),
    "northeast": (1.0, 0.0),
    "northwest": (0.0, 0.0),
    "southeast": (1.0, 1.0),
    "southwest": (0.0, 1.0),
}


def watermark(source: Source, params: Mapping[str, Any], max_pixels: int) -> pyvips.Image:
    """Run images/watermark on ``source``; the image mark obeys ``max_pixels`` as well."""
    image = _rgb(decode(source))
    margin = int(params["margin"])
    position = params["position"]
    room = int(image.width) - (0 if position == "tile" else 2 * margin)
    width = max(1, min(round(int(image.width) * float(params["size"])), room))
    if params.get("image"):
        mark = _image_mark(str(params["image"]), width, min(max_pixels, _MAX_MARK_PIXELS))
    else:
        mark = _text_mark(params["text"], width, params["color"])
    mark = _fit_height(mark, int(image.height) - (0 if position == "tile" else 2 * margin))
    mark = mark * [1, 1, 1, float(params["opacity"])]
    had_alpha = image.hasalpha()
    if position == "tile":
        stamped = image.composite2(_tiled(mark, image, margin), "over")
    else:
        across, down = _PLACES[position]
        left = margin + round((int(image.width) - 2 * margin - int(mark.width)) * across)
        top = margin + round((int(image.height) - 2 * margin - int(mark.height)) * down)
        stamped = image.composite2(mark, "over", x=left, y=top)
    stamped = stamped.cast("uchar")
    return stamped if had_alpha else stamped.extract_band(0, n=int(stamped.bands) - 1)


def _text_mark(text: str, width: int, colour: str) -> pyvips.Image:
    text = text.strip()
    if not text:
        raise ProcessingError("the watermark text is empty")
    markup = html.escape(text, quote=False)
    probe = pyvips.Image.text(markup, font="sans bold", dpi=_PROBE_DPI)
    dpi = max(1, min(_MAX_DPI, round(_PROBE_DPI * width / max(int(probe.width), 1))))
    mask = pyvips.Image.text(markup, font="sans bold", dpi=dpi)
    rgb, alpha = parse_colour(colour)
    ink = (mask.new_from_image(rgb)).copy(interpretation="srgb")
    return ink.bandjoin((mask * alpha).cast("uchar"))


def _image_mark(encoded: str, width: int, max_pixels: int) -> pyvips.Image:
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProcessingError("the watermark image is not valid base64") from exc
    if len(data) > _MAX_MARK_BYTES:
        raise ProcessingError("the watermark image is larger than 1 MiB")
    fmt = sniff_bytes(data[:SNIFF_BYTES])
    if fmt == "gif":
        scan_gif(io.BytesIO(data), max_pixels, 1)
    mark = _rgb(decode_buffer(data, fmt, max_pixels, max_frames=1))
    if not mark.hasalpha():
        mark = mark.bandjoin_const([255])
    return _scale(mark, width / int(mark.width))


def _fit_height(mark: pyvips.Image, room: int) -> pyvips.Image:
    if int(mark.height) <= room or room < 1:
        return mark
    return _scale(mark, room / int(mark.height))


def _scale(mark: pyvips.Image, factor: float) -> pyvips.Image:
    # Resample premultiplied: otherwise the colour of transparent pixels
    # bleeds into the edges as a dark fringe.
    return mark.premultiply().resize(factor).unpremultiply().cast("uchar")


def _tiled(mark: pyvips.Image, image: pyvips.Image, gap: int) -> pyvips.Image:
    cell = mark.embed(0, 0, int(mark.width) + gap, int(mark.height) + gap)
    across = -(-int(image.width) // int(cell.width))
    down = -(-int(image.height) // int(cell.height))
    return cell.replicate(across, down).crop(0, 0, int(image.width), int(image.height))


def _rgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB, keeping alpha: the space the mark is composited in."""
    if image.interpretation == "cmyk":
        image = image.icc_transform("srgb", embedded=True, input_profile="cmyk")
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb").cast("uchar")
    return image
