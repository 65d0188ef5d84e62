"""The compress product: the smallest file in the input's format that still looks the same.

For lossy formats (JPEG, WebP, AVIF) a search finds the lowest quality
whose decoded output keeps ``target_ssim`` (see `adapters.vips.ssim`)
against the decoded input. It runs on a small mosaic of full-resolution
tiles, encoded with the final encode's settings (trellis quantisation moves
the score too much for cheaper settings to predict it), and starts from the
quality of the source's own quantisation table when the source is a JPEG:
each next sample encode aimed where the scores seen cross the target
(`adapters.vips.search`). The chosen
quality is then encoded once on the whole image and scored on every pixel;
the reported ``ssim`` is that score. If the sample flattered the image, the
next full encode is the quality whose sample score covers the difference.
JPEG with 4:4:4 chroma is searched only where it scores higher than 4:2:0
at 4:2:0's answer (saturated edges), or where 4:2:0 never reaches the target.
PNG tries palette quantisation by a bisection on the mosaic and keeps it only
if it beats lossless level-9 deflate; GIF is re-quantised at the highest
effort and TIFF written with deflate and a predictor. An explicit ``quality``
skips the search.

The output is never larger than the input. If no encoding is smaller, an
upright JPEG/PNG/WebP is copied with its metadata containers left out
(`adapters.vips.metadata`); failing that the original bytes are returned
when they hold nothing the policy would remove. Only when privacy and size
conflict (a rotated or GPS-tagged file no encoding can shrink) is the
re-encoded file kept, and ``larger_than_input`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs
import pyvips

from adapters.vips.io import (
    ANIMATED_OUTPUTS,
    DEFAULT_QUALITY,
    Encoded,
    Source,
    buffer_loader,
    decode,
    encode,
    frame_height,
    metadata_policy,
    output_format,
    prepare_for,
)
from adapters.vips.metadata import Keep, strip
from adapters.vips.search import lowest_passing, lowest_reaching
from adapters.vips.ssim import Pixels, comparable, mosaic, ssim

__all__ = ["compress"]

_RANGES: Final = {"jpeg": (30, 95), "webp": (30, 95), "avif": (20, 90), "png": (40, 100)}
_EFFORT: Final = {"webp": 6, "avif": 4, "png": 7, "gif": 10}
_STEP_UP: Final = 3
#: The search's sample: a 4x4 grid of 128 px tiles (`adapters.vips.ssim.mosaic`).
_SAMPLE_TILE: Final = 128
_NO_METADATA: Final = int(pyvips.enums.ForeignKeep.NONE)
_MARKER: Final = 0xFF
_QUANT_TABLES: Final = 0xDB
_START_OF_SCAN: Final = 0xDA
_COEFFICIENTS: Final = 64
#: libjpeg's luminance table at quality 50 (Annex K), in zigzag order as DQT stores it.
_LIBJPEG_LUMA: Final = (
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40,
    26, 24, 22, 22, 24, 49, 35, 37, 29, 40, 58, 51, 61, 60, 57, 51,
    56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87,
    95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
)  # fmt: skip


class _Beaten(Exception):
    """A variant cannot pass with fewer bytes than the best one found."""


@attrs.frozen
class _Attempt:
    data: bytes
    quality: int | None
    ssim: float | None
    settings: dict[str, Any] = attrs.field(factory=dict)


def compress(source: Source, params: Mapping[str, Any]) -> Encoded:
    """Run images/compress on ``source``."""
    fmt = output_format(source, None)
    keep_metadata = params["keep_metadata"]
    target = float(params["target_ssim"])
    quality = params.get("quality")
    animated = source.info.frames > 1 and fmt in ANIMATED_OUTPUTS
    decoded = decode(source, all_frames=animated)
    has_gps = any(field.startswith("exif-ifd3-") for field in decoded.get_fields())
    image, keep, removed = metadata_policy(decoded, keep_metadata=keep_metadata)
    image = prepare_for(image, fmt).copy_memory()
    if fmt in ("jpeg", "webp", "avif"):
        guess = _jpeg_quality(source) if fmt == source.format == "jpeg" else None
        attempt = _lossy(image, fmt, target, quality, keep, guess or DEFAULT_QUALITY[fmt])
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


def _lossy(  # noqa: PLR0913, PLR0917 - the search's inputs
    image: pyvips.Image, fmt: str, target: float, quality: int | None, keep: int, guess: int
) -> _Attempt:
    reference = comparable(image)
    effort = _EFFORT.get(fmt, 4)
    if quality:
        data = encode(image, fmt, keep=keep, quality=quality, effort=effort, thorough=True)
        return _Attempt(data, quality, _score(reference, data, fmt, image))
    search = _SampleSearch(mosaic(image, tile=_SAMPLE_TILE), fmt, target)
    variants: list[dict[str, Any]] = [{"subsample": "on"}] if fmt == "jpeg" else [{}]
    found = search.lowest(variants[0], guess)
    whole = {"subsample": "off"}
    if fmt == "jpeg" and found is None:
        variants, found = [whole], search.lowest(whole, guess)
    elif fmt == "jpeg" and found is not None:
        # Without subsampling every quality costs more bytes; it can only win
        # where it scores higher at subsampling's answer, and then a lower
        # quality may reach the target in fewer bytes.
        size, score = search.probe(variants[0], found)
        if search.probe(whole, found)[1] > score:
            smaller = search.lowest(whole, found, bound=size)
            if smaller is not None and search.probe(whole, smaller)[0] < size:
                variants, found = [whole], smaller
    variant = variants[0]
    q = _RANGES[fmt][1] if found is None else found
    high = _RANGES[fmt][1]
    while True:
        data = encode(image, fmt, keep=keep, quality=q, effort=effort, thorough=True, **variant)
        score = _score(reference, data, fmt, image)
        if score >= target or q >= high:
            return _Attempt(data, q, score, _describe(variant, target_met=score >= target))
        # The sample flattered the image by ``excess``: the next full encode is
        # the lowest quality whose sample score covers it.
        excess = search.probe(variant, q)[1] - score
        q = search.lowest(variant, q + 1, excess=excess) or high


@attrs.define
class _SampleSearch:
    """Encodes of a sample of the image with the final encode's settings, remembered."""

    sample: pyvips.Image
    fmt: str
    target: float
    reference: Pixels = attrs.field(init=False)
    probes: dict[tuple[str, int], tuple[int, float]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        self.reference = comparable(self.sample)

    def probe(self, variant: dict[str, Any], quality: int) -> tuple[int, float]:
        """The sample's bytes and score at ``quality``."""
        key = (str(variant), quality)
        if key not in self.probes:
            data = encode(
                self.sample,
                self.fmt,
                keep=_NO_METADATA,
                quality=quality,
                effort=_EFFORT.get(self.fmt, 4),
                thorough=True,
                **variant,
            )
            self.probes[key] = (len(data), _score(self.reference, data, self.fmt, self.sample))
        return self.probes[key]

    def lowest(
        self,
        variant: dict[str, Any],
        start: int,
        *,
        bound: int | None = None,
        excess: float | None = None,
    ) -> int | None:
        """The lowest quality whose sample score, less ``excess``, reaches the target.

        The search begins at ``start`` and looks below it too, unless
        ``excess`` is given: then the qualities below ``start`` already
        failed on the whole image. None if no quality passes, or if none
        can in fewer than ``bound`` bytes.
        """

        def score(quality: int) -> float:
            size, sample_score = self.probe(variant, quality)
            sample_score -= excess or 0.0
            if sample_score < self.target and bound is not None and size >= bound:
                raise _Beaten  # passing needs a higher quality: more bytes than the bound
            return sample_score

        low, high = _RANGES[self.fmt]
        floor = low if excess is None else start
        try:
            return lowest_reaching(floor, high, score, self.target, start=start)
        except _Beaten:
            return None


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
    q = lowest_passing(low, high, passes)
    while q is not None:
        data = encode(image, "png", keep=keep, quality=q, effort=effort)
        score = _score(reference, data, "png", image)
        if score >= target:
            if len(data) < len(lossless.data):
                return _Attempt(data, q, score, {"palette": True})
            break
        q = None if q >= high else min(high, q + _STEP_UP)
    return lossless


def _jpeg_quality(source: Source) -> int | None:
    """The libjpeg quality whose luminance table is nearest the source's, if it has one.

    A re-encode reaches the target near the quality the source was saved at
    (quantising again at the same steps loses little), so it starts the search.
    """
    data = source.path.read_bytes()
    position = 2
    while position + 4 <= len(data) and data[position] == _MARKER:
        marker = data[position + 1]
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == _START_OF_SCAN:
            return None
        if marker == _QUANT_TABLES:
            precision, table = data[position + 4] >> 4, data[position + 4] & 0x0F
            if precision == 0 and table == 0 and end >= position + 5 + _COEFFICIENTS:
                return _nearest_quality(data[position + 5 : position + 5 + _COEFFICIENTS])
        position = end
    return None


def _nearest_quality(zigzag: bytes) -> int:
    def distance(quality: int) -> int:
        scale = 5000 // quality if quality < 50 else 200 - 2 * quality  # noqa: PLR2004 - libjpeg
        return sum(
            abs(step - min(255, max(1, (base * scale + 50) // 100)))
            for step, base in zip(zigzag, _LIBJPEG_LUMA, strict=True)
        )

    return min(range(1, 101), key=distance)


def _score(reference: Pixels, data: bytes, fmt: str, like: pyvips.Image) -> float:
    options = {"n": -1} if frame_height(like) != int(like.height) else {}
    decoded = pyvips.Operation.call(buffer_loader(fmt), data, **options)
    return ssim(reference, comparable(decoded))


def _describe(variant: dict[str, Any], *, target_met: bool) -> dict[str, Any]:
    described = (
        {"chroma_subsampling": variant["subsample"] == "on"} if "subsample" in variant else {}
    )
    return {**described, "target_met": target_met}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)
