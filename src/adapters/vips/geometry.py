"""Resize, thumbnail, crop and rotate: the products that change an image's geometry.

Each function takes an inspected `Source` and validated parameters and
returns an upright ``pyvips.Image``; the processor applies the metadata
policy and writes it. Resizing goes through ``thumbnail_source`` so JPEG,
WebP and HEIF decode at a reduced size (shrink-on-load). The target size is
planned here, in plain integers, so that fit modes and the no-enlarging rule
are exact and testable: ``inside`` fits within the box, ``outside`` covers
it, ``cover`` covers then crops the centre, ``contain`` fits then pads to the
box with ``background``, ``fill`` stretches. Without ``upscale`` no axis is
ever enlarged. Given only a width or a height, every mode keeps the aspect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import pyvips

from adapters.vips.io import MATTE, Source, decode, parse_colour, thumbnail
from imagecore.errors import ProcessingError
from imagecore.params import parse_ratio

__all__ = ["crop", "plan_resize", "resize", "rotate"]

_GRAVITY_SIDES: Final = {
    "centre": (0.5, 0.5),
    "north": (0.5, 0.0),
    "south": (0.5, 1.0),
    "east": (1.0, 0.5),
    "west": (0.0, 0.5),
}
_FLIPS: Final = {
    "horizontal": ("horizontal",),
    "vertical": ("vertical",),
    "both": ("horizontal", "vertical"),
}


def plan_resize(  # noqa: PLR0913 - the box, the image and the two rules
    width: int,
    height: int,
    box_width: int | None,
    box_height: int | None,
    fit: str,
    *,
    upscale: bool,
) -> tuple[int, int]:
    """The size to scale ``width`` x ``height`` to, before any crop or padding."""
    if box_width is None and box_height is None:
        return width, height
    if fit == "fill" and box_width is not None and box_height is not None:
        if upscale:
            return box_width, box_height
        return min(box_width, width), min(box_height, height)
    ratios = [box / size for box, size in ((box_width, width), (box_height, height)) if box]
    scale = max(ratios) if fit in ("outside", "cover") else min(ratios)
    if not upscale:
        scale = min(scale, 1.0)
    # Round up on the axis that covers the box so that rounding never leaves
    # a cover one pixel short.
    rounding = math.ceil if fit in ("outside", "cover") else round
    scaled_width = max(1, min(int(rounding(width * scale - 1e-9)), width if not upscale else 10**7))
    scaled_height = max(
        1, min(int(rounding(height * scale - 1e-9)), height if not upscale else 10**7)
    )
    return scaled_width, scaled_height


def resize(source: Source, params: Mapping[str, Any]) -> pyvips.Image:
    """Run images/resize (and images/thumbnail, which is a resize with a default box)."""
    box_width, box_height = params.get("width"), params.get("height")
    fit = params["fit"]
    upscale = bool(params.get("upscale"))  # thumbnail never enlarges
    width, height = plan_resize(
        source.info.width, source.info.height, box_width, box_height, fit, upscale=upscale
    )
    image = thumbnail(source, width, height)
    if fit == "cover" and box_width and box_height:
        image = _cut(image, min(box_width, width), min(box_height, height), "centre")
    elif fit == "contain" and box_width and box_height:
        image = _pad(image, box_width, box_height, params.get("background", MATTE))
    return image


def crop(source: Source, params: Mapping[str, Any]) -> pyvips.Image:
    """Run images/crop: a rectangle, or a region of a size or aspect ratio placed by gravity."""
    image = decode(source)
    width, height = int(image.width), int(image.height)
    if "left" in params or "top" in params:
        left, top = int(params.get("left", 0)), int(params.get("top", 0))
        region_width = int(params.get("width", width - left))
        region_height = int(params.get("height", height - top))
        inside = region_width >= 1 and region_height >= 1
        if not inside or left + region_width > width or top + region_height > height:
            raise ProcessingError(
                f"the rectangle {region_width}x{region_height} at ({left}, {top}) lies outside "
                f"the {width}x{height} image"
            )
        return image.crop(left, top, region_width, region_height)
    region_width, region_height = _region(width, height, params)
    return _cut(image, region_width, region_height, params["gravity"])


def rotate(source: Source, params: Mapping[str, Any]) -> pyvips.Image:
    """Run images/rotate: EXIF orientation (unless off), a clockwise angle, then a flip."""
    image = decode(source, autorotate=params["auto_orient"])
    angle = float(params["angle"]) % 360
    if angle % 90 == 0:
        if angle:
            image = image.rot(f"d{int(angle)}")
    else:
        rgb, alpha = parse_colour(params["background"])
        image = _with_alpha_if(_paintable(image), needed=alpha < 1)
        image = image.rotate(angle, background=_fill(image, rgb, alpha))
    for direction in _FLIPS.get(params["flip"], ()):
        image = image.flip(direction)
    return image


def _region(width: int, height: int, params: Mapping[str, Any]) -> tuple[int, int]:
    """The size of a gravity-placed region, clamped to the image."""
    region_width, region_height = params.get("width"), params.get("height")
    if "aspect_ratio" in params and not (region_width and region_height):
        ratio = parse_ratio("aspect_ratio", str(params["aspect_ratio"]))
        if region_width:
            region_height = round(region_width / ratio)
        elif region_height:
            region_width = round(region_height * ratio)
        elif width / height > ratio:
            region_width, region_height = round(height * ratio), height
        else:
            region_width, region_height = width, round(width / ratio)
    return (
        max(1, min(int(region_width or width), width)),
        max(1, min(int(region_height or height), height)),
    )


def _cut(image: pyvips.Image, width: int, height: int, gravity: str) -> pyvips.Image:
    if (width, height) == (int(image.width), int(image.height)):
        return image
    if gravity in ("attention", "entropy"):
        return image.smartcrop(width, height, interesting=gravity)
    across, down = _GRAVITY_SIDES[gravity]
    left = round((int(image.width) - width) * across)
    top = round((int(image.height) - height) * down)
    return image.crop(left, top, width, height)


def _pad(image: pyvips.Image, width: int, height: int, background: str) -> pyvips.Image:
    rgb, alpha = parse_colour(background)
    image = _with_alpha_if(_paintable(image), needed=alpha < 1)
    left = (width - int(image.width)) // 2
    top = (height - int(image.height)) // 2
    return image.embed(
        left, top, width, height, extend="background", background=_fill(image, rgb, alpha)
    )


def _paintable(image: pyvips.Image) -> pyvips.Image:
    # A background colour is given in RGB: bring CMYK and other spaces there first.
    if image.interpretation == "cmyk":
        return image.icc_transform("srgb", embedded=True, input_profile="cmyk")
    if image.interpretation not in ("srgb", "b-w", "rgb16", "grey16"):
        return image.colourspace("srgb")
    return image


def _with_alpha_if(image: pyvips.Image, *, needed: bool) -> pyvips.Image:
    if not needed or image.hasalpha():
        return image
    return image.bandjoin_const([65535 if image.format == "ushort" else 255])


def _fill(image: pyvips.Image, rgb: list[float], alpha: float) -> list[float]:
    """``rgb`` and ``alpha`` as a background value for every band of ``image``."""
    top = 65535.0 if image.format == "ushort" else 255.0
    colour = [value * top / 255 for value in rgb]
    bands = int(image.bands)
    colour_bands = bands - 1 if image.hasalpha() else bands
    values = colour if colour_bands >= 3 else [sum(colour) / 3] * colour_bands  # noqa: PLR2004 - RGB
    values = values[:colour_bands] + [0.0] * max(0, colour_bands - len(values))
    return values + ([alpha * top] if image.hasalpha() else [])
