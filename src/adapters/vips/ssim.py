"""Structural similarity (SSIM) computed with libvips operations.

The compress product searches for the lowest quality whose output keeps a
target SSIM against the input. The measure is Wang et al. (2004): Gaussian
window (sigma 1.5), C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255, averaged over
the image and then over the sRGB channels (and alpha, when present).
Channel-wise rather than luma-only on purpose: 4:2:0 chroma subsampling
ruins saturated edges that luma SSIM does not see (a red subject scored
0.994 on luma and 0.94 on its blue-difference channel).

`mosaic` cuts a large image into a grid of full-resolution tiles so a search
costs a fraction of a full encode while still seeing the real artefacts
(downscaling would average them away); the caller verifies the chosen
quality once on the whole image.
"""

from __future__ import annotations

from typing import Final

import pyvips

__all__ = ["comparable", "mosaic", "ssim"]

_C1: Final = (0.01 * 255) ** 2
_C2: Final = (0.03 * 255) ** 2
_SIGMA: Final = 1.5
#: Tiles are multiples of 16 and start on multiples of 16 so that JPEG
#: blocks and chroma subsampling line up with the full image's.
_TILE: Final = 256
_GRID: Final = 4


def comparable(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB (or grey) float bands, alpha last, so two encodings compare like for like."""
    if image.interpretation == "cmyk":
        image = image.icc_transform("srgb", embedded=True, input_profile="cmyk")
    elif image.interpretation not in ("srgb", "b-w"):
        grey = image.interpretation in ("grey16", "b-w")
        image = image.colourspace("b-w" if grey else "srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    if image.hasalpha():
        alpha = image.extract_band(image.bands - 1)
        # Colour under transparent pixels is invisible and lossy encoders
        # may change it freely: compare what is shown, plus the alpha.
        image = image.flatten(background=[128] * (image.bands - 1)).bandjoin(alpha)
    # Held in memory as 8-bit and cast on the fly: a float copy is four times
    # the size (49 MB for a 2560x1600 photo) and slower to read than to recompute.
    return image.copy_memory().cast("float")


def ssim(reference: pyvips.Image, candidate: pyvips.Image) -> float:
    """Mean SSIM of two `comparable` images of the same size and bands."""
    a, b = reference, candidate
    if a.bands != b.bands:
        a, b = _grey(a), _grey(b)
    # Wang's terms from the blurs of the sum and the difference: four blurs
    # instead of five, the same value to float rounding (the blurs are most
    # of the cost). With s = a + b and d = a - b: 2 mu_a mu_b = (mu_s^2 -
    # mu_d^2) / 2, mu_a^2 + mu_b^2 = (mu_s^2 + mu_d^2) / 2, and the same for
    # the second moments.
    total, difference = a + b, a - b
    mu_s, mu_d = _blur(total), _blur(difference)
    means_s, means_d = mu_s * mu_s, mu_d * mu_d
    moments_s, moments_d = _blur(total * total), _blur(difference * difference)
    numerator = ((means_s - means_d) * 0.5 + _C1) * (
        (moments_s - moments_d - means_s + means_d) * 0.5 + _C2
    )
    denominator = ((means_s + means_d) * 0.5 + _C1) * (
        (moments_s + moments_d - means_s - means_d) * 0.5 + _C2
    )
    return float((numerator / denominator).avg())


def mosaic(image: pyvips.Image, *, grid: int = _GRID, tile: int = _TILE) -> pyvips.Image:
    """A grid of full-resolution tiles spread over ``image``, or the image itself if small.

    ``tile`` must be a multiple of 16 (see `_TILE`).
    """
    width, height = int(image.width), int(image.height)
    if width * height <= (grid * tile) ** 2 * 2:
        return image
    tiles = []
    for row in range(grid):
        for column in range(grid):
            left = _aligned(column * (width - tile) // max(grid - 1, 1))
            top = _aligned(row * (height - tile) // max(grid - 1, 1))
            tiles.append(image.crop(left, top, min(tile, width - left), min(tile, height - top)))
    return pyvips.Image.arrayjoin(tiles, across=grid).copy_memory()


def _aligned(offset: int) -> int:
    return max(0, offset - offset % 16)


def _blur(image: pyvips.Image) -> pyvips.Image:
    return image.gaussblur(_SIGMA, min_ampl=0.01, precision="float")


def _grey(image: pyvips.Image) -> pyvips.Image:
    # One side lost its colour (a grey encode of a colour source): compare
    # luminance only rather than refuse to compare.
    shown = image.extract_band(0, n=3) if image.bands >= 3 else image.extract_band(0)  # noqa: PLR2004 - RGB
    if shown.bands == 3:  # noqa: PLR2004 - RGB
        shown = shown.copy(interpretation="srgb").colourspace("b-w")
    return shown.cast("float")
