"""The product catalogue: every image tool as data.

A `Product` is a key, a title, a description, typed parameters and limits.
Its id is derived from its key, so it is stable across processes, restarts
and databases. `CATALOGUE` is the built-in list; repositories store it at
start so that instructions can name a product by id (the seed's way) or by
key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs

from imagecore.errors import InvalidParameter, UnknownProduct
from imagecore.formats import MIME_TYPES
from imagecore.params import Kind, Parameter, parse_ratio, validate_params

__all__ = [
    "CATALOGUE",
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "Limits",
    "Product",
    "find_product",
    "product_id_for",
]

#: Formats we decode. Anything else is refused before a decoder sees it.
INPUT_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "gif", "tiff", "avif", "heif")
#: Formats we write.
OUTPUT_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "avif", "gif", "tiff")

_MiB = 1024 * 1024


def product_id_for(key: str) -> str:
    """Derive the stable 24-hex id of the product with ``key``."""
    return hashlib.sha256(f"imagecore-product:{key}".encode()).hexdigest()[:24]


@attrs.frozen
class Limits:
    """What one product accepts, checked before any pixel is decoded."""

    max_file_bytes: int = 200 * _MiB
    max_pixels: int = 100_000_000
    max_frames: int = 100
    max_files_per_instruction: int = 50
    input_formats: tuple[str, ...] = INPUT_FORMATS


@attrs.frozen
class Product:
    """One image tool: what it does, what it takes and what it accepts.

    ``one_of`` lists groups of parameter names of which at least one must be
    given (``resize`` needs a width or a height).
    """

    key: str
    title: str
    description: str
    parameters: tuple[Parameter, ...] = ()
    limits: Limits = Limits()
    one_of: tuple[tuple[str, ...], ...] = ()
    output_mime_type: str | None = None

    @property
    def id(self) -> str:
        """The stable id derived from the key."""
        return product_id_for(self.key)

    def validate(self, raw: Mapping[str, object] | None) -> dict[str, Any]:
        """Return checked parameters with defaults filled in, or raise `InvalidParameter`."""
        values = validate_params(self.parameters, raw)
        for group in self.one_of:
            if not any(name in values for name in group):
                raise InvalidParameter(group[0], f"give at least one of: {', '.join(group)}")
        if "aspect_ratio" in values:
            parse_ratio("aspect_ratio", values["aspect_ratio"])
        return values


def _format(default: str | None = None, *, required: bool = False) -> Parameter:
    return Parameter(
        "format",
        Kind.CHOICE,
        "Output format; by default the input's format is kept.",
        default=default,
        choices=OUTPUT_FORMATS,
        required=required,
    )


def _quality(default: int | None = None) -> Parameter:
    return Parameter(
        "quality",
        Kind.INTEGER,
        "Encoder quality from 1 (smallest) to 100 (best).",
        default=default,
        minimum=1,
        maximum=100,
    )


_KEEP_METADATA = Parameter(
    "keep_metadata",
    Kind.BOOLEAN,
    "Keep EXIF/XMP/IPTC metadata in the output (GPS is removed all the same).",
    default=False,
)
_FIT = Parameter(
    "fit",
    Kind.CHOICE,
    "How the image fits the box: inside (within, keep aspect), outside (cover the box, "
    "keep aspect), cover (fill the box, crop the rest), contain (within, pad to the box), "
    "fill (stretch to the box).",
    default="inside",
    choices=("inside", "outside", "cover", "contain", "fill"),
)
_GRAVITY = Parameter(
    "gravity",
    Kind.CHOICE,
    "Which part to keep when cropping: attention (the most interesting region), entropy "
    "(the busiest), or a side.",
    default="attention",
    choices=("attention", "entropy", "centre", "north", "south", "east", "west"),
)
_BACKGROUND = Parameter(
    "background",
    Kind.COLOR,
    "Colour for padding and uncovered corners (#rrggbb or #rrggbbaa).",
    default="#ffffff",
)


def _size(name: str, what: str, default: int | None = None) -> Parameter:
    return Parameter(name, Kind.INTEGER, what, default=default, minimum=1, maximum=16384)


CATALOGUE: tuple[Product, ...] = (
    Product(
        "images/compress",
        "Compress",
        "A smaller file in the same format: the quality is searched for the smallest file "
        "that stays visually the same (a structural-similarity target), with the best "
        "encoder settings (mozjpeg trellis, PNG palette, WebP/AVIF effort).",
        (
            _quality(),
            Parameter(
                "target_ssim",
                Kind.NUMBER,
                "Similarity to the input the searched quality must keep (1.0 = identical).",
                default=0.98,
                minimum=0.9,
                maximum=0.999,
            ),
            _KEEP_METADATA,
        ),
    ),
    Product(
        "images/convert",
        "Convert",
        "Convert to JPEG, PNG, WebP, AVIF, GIF or TIFF (HEIC/HEIF input accepted).",
        (
            _format(required=True),
            _quality(),
            Parameter("lossless", Kind.BOOLEAN, "Lossless WebP or AVIF.", default=False),
            _KEEP_METADATA,
        ),
    ),
    Product(
        "images/resize",
        "Resize",
        "Resize to a width and/or height with a fit mode; never enlarges unless asked.",
        (
            _size("width", "Target width in pixels."),
            _size("height", "Target height in pixels."),
            _FIT,
            Parameter("upscale", Kind.BOOLEAN, "Allow enlarging a smaller image.", default=False),
            _BACKGROUND,
            _format(),
            _quality(),
            _KEEP_METADATA,
        ),
        one_of=(("width", "height"),),
    ),
    Product(
        "images/crop",
        "Crop",
        "Cut a rectangle (left, top, width, height), or a region of a width/height or an "
        "aspect ratio placed by gravity (attention finds the subject).",
        (
            Parameter(
                "left", Kind.INTEGER, "Left edge of the rectangle.", minimum=0, maximum=1_000_000
            ),
            Parameter(
                "top", Kind.INTEGER, "Top edge of the rectangle.", minimum=0, maximum=1_000_000
            ),
            _size("width", "Width of the region in pixels."),
            _size("height", "Height of the region in pixels."),
            Parameter(
                "aspect_ratio",
                Kind.STRING,
                "Aspect ratio of the largest region to keep, e.g. 16:9.",
                max_length=20,
            ),
            _GRAVITY,
            _format(),
            _quality(),
            _KEEP_METADATA,
        ),
        one_of=(("width", "height", "aspect_ratio"),),
    ),
    Product(
        "images/rotate",
        "Rotate and flip",
        "Rotate by any angle (multiples of 90 are exact) and flip; EXIF orientation is "
        "applied first.",
        (
            Parameter(
                "angle",
                Kind.NUMBER,
                "Clockwise angle in degrees.",
                default=0,
                minimum=-360,
                maximum=360,
            ),
            Parameter(
                "flip",
                Kind.CHOICE,
                "Mirror the image.",
                default="none",
                choices=("none", "horizontal", "vertical", "both"),
            ),
            Parameter(
                "auto_orient", Kind.BOOLEAN, "Apply the EXIF orientation first.", default=True
            ),
            _BACKGROUND,
            _format(),
            _quality(),
            _KEEP_METADATA,
        ),
    ),
    Product(
        "images/thumbnail",
        "Thumbnail",
        "A small preview, decoded at reduced size (shrink-on-load); 256x256 by default.",
        (
            _size("width", "Box width in pixels.", default=256),
            _size("height", "Box height in pixels.", default=256),
            attrs.evolve(_FIT, default="inside"),
            _format(),
            _quality(),
        ),
    ),
    Product(
        "images/strip-metadata",
        "Strip metadata",
        "Remove EXIF, XMP, IPTC and comments; the report lists every field removed.",
        (
            Parameter(
                "keep_icc",
                Kind.BOOLEAN,
                "Keep the colour profile so colours stay right.",
                default=True,
            ),
        ),
    ),
    Product(
        "images/metadata",
        "Metadata",
        "Read dimensions, format, EXIF, colour profile, dominant colour and a BlurHash; the "
        "output is a JSON document.",
        (),
        output_mime_type=MIME_TYPES["json"],
    ),
    Product(
        "images/watermark",
        "Watermark",
        "Stamp a text or an image (base64 PNG/JPEG/WebP) onto the picture.",
        (
            Parameter("text", Kind.STRING, "Text to stamp.", max_length=200),
            Parameter(
                "image",
                Kind.STRING,
                "A small image to stamp, base64-encoded (at most 1 MiB).",
                max_length=1_400_000,
                pattern=r"[A-Za-z0-9+/=\s]+",
            ),
            Parameter(
                "position",
                Kind.CHOICE,
                "Where to put the mark.",
                default="southeast",
                choices=(
                    "centre",
                    "north",
                    "south",
                    "east",
                    "west",
                    "northeast",
                    "northwest",
                    "southeast",
                    "southwest",
                    "tile",
                ),
            ),
            Parameter(
                "opacity",
                Kind.NUMBER,
                "Opacity of the mark.",
                default=0.5,
                minimum=0.0,
                maximum=1.0,
            ),
            Parameter(
                "size",
                Kind.NUMBER,
                "Width of the mark as a share of the image width.",
                default=0.25,
                minimum=0.01,
                maximum=1.0,
            ),
            Parameter("color", Kind.COLOR, "Colour of the text.", default="#ffffff"),
            Parameter(
                "margin",
                Kind.INTEGER,
                "Distance from the edge in pixels.",
                default=16,
                minimum=0,
                maximum=4096,
            ),
            _format(),
            _quality(),
            _KEEP_METADATA,
        ),
        one_of=(("text", "image"),),
    ),
)

_BY_KEY = {p.key: p for p in CATALOGUE}
_BY_ID = {p.id: p for p in CATALOGUE}


def find_product(ref: str) -> Product:
    """Find a catalogue product by key (``images/resize``) or id; raise `UnknownProduct`."""
    product = _BY_KEY.get(ref) or _BY_ID.get(ref)
    if product is None:
        known = ", ".join(sorted(_BY_KEY))
        raise UnknownProduct(f"no product {ref!r}; the products are: {known}")
    return product
