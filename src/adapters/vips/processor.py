"""`VipsImageProcessor`: the `imagecore.ports.ImageProcessor` on libvips (pyvips).

Every product of `imagecore.products.CATALOGUE` runs here on local files.
The order of defences is fixed: `configure_vips` (loader allow-list, no
cache) when a process imagecore owns starts, then `open_source` (magic bytes,
header limits) before any pixel is decoded, and every libvips call inside the
one `vips_errors` block that turns ``pyvips.Error`` into `imagecore.errors`.

Parameters go through the product's `Product.validate` once, on entry, so
that an omitted one means the catalogue's default for every caller (the
services and the CLI validate already; validating twice changes nothing).
The products below read defaulted parameters by name and never declare a
default of their own.

Outputs are upright and carry only the ICC profile unless
``keep_metadata`` asks for more, and never GPS (see `adapters.vips.io`).
The output format is ``format`` when the product takes one, else the
input's; HEIF, which this libvips cannot write, becomes JPEG. Animated GIF
and WebP keep their frames in compress, convert (to GIF or WebP) and
strip-metadata; the other products use the first frame.

The processor holds no state and changes no libvips setting: it pickles to
nothing, so it can be sent to a process pool, whose children call
`configure_vips` as they start. In a host's own process it leaves the host's
libvips as it was (the host may call `configure_vips`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import pyvips

from adapters.vips.compress import compress
from adapters.vips.describe import describe, strip_metadata
from adapters.vips.geometry import crop, resize, rotate
from adapters.vips.guard import configure_vips, self_test, vips_errors
from adapters.vips.io import (
    ANIMATED_OUTPUTS,
    DEFAULT_QUALITY,
    MATTE,
    Encoded,
    Source,
    decode,
    encode,
    frame_height,
    metadata_policy,
    open_source,
    output_format,
    prepare_for,
)
from adapters.vips.watermark import watermark
from imagecore.errors import (
    DependencyUnavailable,
    StorageFull,
    UnknownProduct,
    out_of_space,
)
from imagecore.formats import EXTENSIONS, MIME_TYPES
from imagecore.model import ImageInfo
from imagecore.ports import ProcessingRequest, ProcessingResult
from imagecore.products import find_product

__all__ = ["VipsImageProcessor", "configure_vips", "self_test"]

_Product = Callable[[Source, ProcessingRequest], Encoded]


@attrs.frozen
class VipsImageProcessor:
    """Runs the catalogue's products with libvips; stateless, picklable, one per process or many."""

    def inspect(self, source: Path, max_pixels: int, max_frames: int) -> ImageInfo:
        """Read the header. Raises `UnsupportedMediaType`, `ImageTooLarge`, `CorruptImage`."""
        with vips_errors():
            return open_source(source, max_pixels, max_frames).info

    def process(self, request: ProcessingRequest) -> ProcessingResult:
        """Run the product and write ``request.destination``.

        Raises `UnknownProduct`, `InvalidParameter`, `UnsupportedMediaType`,
        `ImageTooLarge`, `CorruptImage` or `ProcessingError`.
        """
        product = _PRODUCTS.get(request.product_key)
        if product is None:
            raise UnknownProduct(f"the libvips processor has no product {request.product_key!r}")
        params = find_product(request.product_key).validate(request.params)
        request = attrs.evolve(request, params=params)
        with vips_errors():
            source = open_source(request.source, request.max_pixels, request.max_frames)
            encoded = product(source, request)
        try:
            request.destination.write_bytes(encoded.data)
        except OSError as exc:
            # A full disk is not the image's fault and may pass: retried, not failed.
            if out_of_space(exc):
                raise StorageFull("no space left to write the output", str(exc)) from exc
            raise DependencyUnavailable("the output cannot be written", str(exc)) from exc
        return ProcessingResult(
            format=encoded.format,
            mime_type=MIME_TYPES[encoded.format],
            extension=EXTENSIONS[encoded.format],
            size=len(encoded.data),
            width=encoded.width,
            height=encoded.height,
            input=source.info,
            metadata=encoded.metadata,
        )


def _finish(
    source: Source, image: pyvips.Image, params: Mapping[str, Any], *, lossless: bool = False
) -> Encoded:
    """Apply the metadata policy, bring pixels to the output format and encode."""
    fmt = output_format(source, params.get("format"))
    image, keep, removed = metadata_policy(image, keep_metadata=bool(params.get("keep_metadata")))
    image = prepare_for(image, fmt, params.get("background", MATTE))
    quality = params.get("quality")
    data = encode(image, fmt, keep=keep, quality=quality, lossless=lossless)
    used = None if lossless or fmt in ("gif", "tiff") else quality or DEFAULT_QUALITY.get(fmt)
    return Encoded(
        data,
        fmt,
        int(image.width),
        frame_height(image),
        {
            "input_format": source.format,
            "input_width": source.info.width,
            "input_height": source.info.height,
            "input_size": source.size,
            "quality": used,
            "lossless": lossless or (fmt in ("png", "gif", "tiff") and not quality),
            "removed": removed,
            "auto_oriented": source.orientation != 1,
            "frames": int(image.height) // frame_height(image),
        },
    )


def _convert(source: Source, request: ProcessingRequest) -> Encoded:
    params = request.params
    animated = params["format"] in ANIMATED_OUTPUTS
    image = decode(source, all_frames=animated)
    lossless = params["lossless"] and params["format"] in ("webp", "avif")
    return _finish(source, image, params, lossless=lossless)


def _metadata(source: Source, _request: ProcessingRequest) -> Encoded:
    document = describe(source)
    data = json.dumps(document, indent=2, ensure_ascii=False).encode()
    return Encoded(data, "json", None, None, document)


_PRODUCTS: Final[dict[str, _Product]] = {
    "images/compress": lambda source, request: compress(source, request.params),
    "images/convert": _convert,
    "images/resize": lambda s, r: _finish(s, resize(s, r.params), r.params),
    "images/thumbnail": lambda s, r: _finish(s, resize(s, r.params), r.params),
    "images/crop": lambda s, r: _finish(s, crop(s, r.params), r.params),
    "images/rotate": lambda s, r: _finish(s, rotate(s, r.params), r.params),
    "images/strip-metadata": lambda source, request: strip_metadata(source, request.params),
    "images/metadata": _metadata,
    "images/watermark": lambda s, r: _finish(s, watermark(s, r.params, r.max_pixels), r.params),
}
