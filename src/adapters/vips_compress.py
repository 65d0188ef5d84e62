"""The compress product: the smallest file in the input's format that still looks the same.

For lossy formats (JPEG, WebP, AVIF) a binary search finds the lowest
quality whose decoded output keeps ``target_ssim`` (see `adapters.vips_ssim`)
against the decoded input. The search runs on a mosaic of full-resolution
tiles; the chosen quality is then encoded on the whole image and verified
there, stepping up until the target holds. JPEG is searched twice, with 4:2:0
and with 4:4:4 chroma, because saturated images often reach the target with
a smaller file without subsampling than with it. PNG tries palette
quantisation by the same search and keeps it only if it beats lossless
level-9 deflate; GIF is re-quantised at the highest effort and TIFF written
with deflate and a predictor. An explicit ``quality`` skips the search.

The output is never larger than the input. If no encoding is smaller, an
upright JPEG/PNG/WebP is copied with its metadata containers left out
(`adapters.vips_container`); failing that the original bytes are returned
when they hold nothing the policy would remove. Only when privacy and size
conflict (a rotated or GPS-tagged file no encoding can shrink) is the
re-encoded file kept, and ``larger_than_input`` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
import pyvips

from adapters.vips_container import Keep, strip
from adapters.vips_io import (
    ANIMATED_OUTPUTS,
    Encoded,
    Source,
    decode,
    encode,
    frame_height,
    metadata_policy,
    output_format,
    prepare_for,
)
from adapters.vips_ssim import comparable, mosaic, ssim

__all__ = ["compress"]

_RANGES: Final = {"jpeg": (30, 95), "webp": (30, 95), "avif": (20, 90), "png": (40, 100)}
_EFFORT: Final = {"webp": 6, "avif": 4, "png": 7, "gif": 10}
_STEP_UP: Final = 3
_NO_METADATA: Final = int(pyvips.enums.ForeignKeep.NONE)


@attrs.frozen
class _Attempt:
    data: bytes
    quality: int | None
    ssim: float | None
    settings: dict[str, Any] = attrs.field(factory=dict)


def compress(source: Source, params: Mapping[str, Any]) -> Encoded:
    """Run images/compress on ``source``."""
    fmt = output_format(source, None)
    keep_metadata = bool(params.get("keep_metadata", False))
    target = float(params.get("target_ssim", 0.98))
    quality = params.get("quality")
    animated = source.info.frames > 1 and fmt in ANIMATED_OUTPUTS
    decoded = decode(source, all_frames=animated)
    has_gps = any(field.startswith("exif-ifd3-") for field in decoded.get_fields())
    image, keep, removed = metadata_policy(decoded, keep_metadata=keep_metadata)
    image = prepare_for(image, fmt).copy_memory()
    if fmt in ("jpeg", "webp", "avif"):
        attempt = _lossy(image, fmt, target, quality, keep)
    elif fmt == "png":
        attempt = _png(image, target, quality, keep)
    else:
        attempt = _Attempt(
            encode(image, fmt, keep=keep, effort=_EFFORT.get(fmt, 4), thorough=True), None, None
        )
    report: dict[str, Any] = {
        "input_format": source.format,
        "input_width": source.info.width,
        "input_height": source.info.height,
        "input_size": source.size,
        "target_ssim": target,
        "removed": removed,
        "strategy": "reencoded",
        "quality": attempt.quality,
        "ssim": _round(attempt.ssim),
        **attempt.settings,
    }
    data = attempt.data
    if len(data) >= source.size:
        data = _not_bigger(
            source, fmt, attempt, report, keep_metadata=keep_metadata, has_gps=has_gps
        )
    report["output_size"] = len(data)
    report["ratio"] = round(len(data) / max(source.size, 1), 4)
    width, height = int(image.width), frame_height(image)
    if report["strategy"] != "reencoded":
        width, height = source.info.width, source.info.height
    return Encoded(data, fmt, width, height, report)


def _not_bigger(  # noqa: PLR0913 - the facts the fallback weighs
    source: Source,
    fmt: str,
    attempt: _Attempt,
    report: dict[str, Any],
    *,
    keep_metadata: bool,
    has_gps: bool,
) -> bytes:
    """Pick a copy of the input no bigger than it, or keep the encode and say why."""
    upright_same_format = source.orientation == 1 and fmt == source.format
    original = source.path.read_bytes() if upright_same_format else b""
    keep_exif = keep_metadata and not has_gps
    keep = Keep(icc=True, exif=keep_exif, xmp=keep_exif, iptc=keep_metadata)
    stripped = strip(original, fmt, keep) if original else None
    if stripped is not None:
        report.update(
            strategy="stripped-original" if stripped.removed else "original",
            quality=None,
            ssim=1.0,
            removed_containers=list(stripped.removed),
        )
        return stripped.data
    if original and not report["removed"]:
        report.update(strategy="original", quality=None, ssim=1.0)
        return original
    report["larger_than_input"] = True
    report["reason"] = (
        "no encoding was smaller, and the input cannot be returned as it is because it "
        + ("needs rotating" if source.orientation != 1 else "holds metadata that must be removed")
    )
    return attempt.data


def _lossy(
    image: pyvips.Image, fmt: str, target: float, quality: int | None, keep: int
) -> _Attempt:
    reference = comparable(image)
    effort = _EFFORT.get(fmt, 4)
    if quality:
        data = encode(image, fmt, keep=keep, quality=quality, effort=effort, thorough=True)
        return _Attempt(data, quality, _score(reference, data, fmt, image))
    variants: list[dict[str, Any]] = (
        [{"subsample": "on"}, {"subsample": "off"}] if fmt == "jpeg" else [{}]
    )
    sample = mosaic(image)
    sample_reference = reference if sample is image else comparable(sample)
    best: tuple[int, int, dict[str, Any]] | None = None  # (sample bytes, quality, variant)
    for variant in variants:
        sizes: dict[int, int] = {}

        def passes(
            q: int, variant: dict[str, Any] = variant, sizes: dict[int, int] = sizes
        ) -> bool:
            data = encode(
                sample, fmt, keep=_NO_METADATA, quality=q, effort=effort, **variant, thorough=True
            )
            sizes[q] = len(data)
            return _score(sample_reference, data, fmt, sample) >= target

        found = _lowest_passing(*_RANGES[fmt], passes)
        if found is not None and (best is None or sizes[found] < best[0]):
            best = (sizes[found], found, variant)
    _low, high = _RANGES[fmt]
    q, variant = (best[1], best[2]) if best else (high, variants[-1])
    while True:
        data = encode(image, fmt, keep=keep, quality=q, effort=effort, **variant, thorough=True)
        score = _score(reference, data, fmt, image)
        if score >= target or q >= high:
            return _Attempt(data, q, score, _describe(variant, target_met=score >= target))
        q = min(high, q + _STEP_UP)


def _png(image: pyvips.Image, target: float, quality: int | None, keep: int) -> _Attempt:
    lossless = _Attempt(encode(image, "png", keep=keep), None, 1.0, {"palette": False})
    reference = comparable(image)
    effort = _EFFORT["png"]
    if quality:
        data = encode(image, "png", keep=keep, quality=quality, effort=effort)
        return _Attempt(data, quality, _score(reference, data, "png", image), {"palette": True})
    sample = mosaic(image)
    sample_reference = reference if sample is image else comparable(sample)

    def passes(q: int) -> bool:
        data = encode(sample, "png", keep=_NO_METADATA, quality=q, effort=effort)
        return _score(sample_reference, data, "png", sample) >= target

    low, high = _RANGES["png"]
    q = _lowest_passing(low, high, passes)
    while q is not None:
        data = encode(image, "png", keep=keep, quality=q, effort=effort)
        score = _score(reference, data, "png", image)
        if score >= target:
            if len(data) < len(lossless.data):
                return _Attempt(data, q, score, {"palette": True})
            break
        q = None if q >= high else min(high, q + _STEP_UP)
    return lossless


def _lowest_passing(low: int, high: int, passes: Callable[[int], bool]) -> int | None:
    """The lowest quality in [low, high] that passes, assuming quality helps; None if none does.

    ``high`` itself is tried only if nothing below it passes: one encode fewer
    whenever the answer is lower, the same answer either way.
    """
    top = high
    while low < high:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle + 1
    if high == top and not passes(top):
        return None
    return high


def _score(reference: pyvips.Image, data: bytes, fmt: str, like: pyvips.Image) -> float:
    options = {"n": -1} if frame_height(like) != int(like.height) else {}
    loader = {
        "jpeg": "jpegload_buffer",
        "webp": "webpload_buffer",
        "avif": "heifload_buffer",
        "png": "pngload_buffer",
    }[fmt]
    decoded = pyvips.Operation.call(loader, data, **options)
    return ssim(reference, comparable(decoded))


def _describe(variant: dict[str, Any], *, target_met: bool) -> dict[str, Any]:
    described = (
        {"chroma_subsampling": variant["subsample"] == "on"} if "subsample" in variant else {}
    )
    return {**described, "target_met": target_met}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)
