"""Quality scores of an encoded image against its reference: SSIMULACRA2 and SSIM.

SSIMULACRA2 is the ``ssimulacra2`` PyPI package's implementation (its
functions, constants and weights), called the way its ``compute_ssimulacra2``
does. Two changes of speed only, checked in `self_check` to give the same
score to 1e-9: the reference's half of the computation (its XYB planes and
their blurs at each scale) is kept and reused for every candidate, and sRGB
is linearised with one ``np.where`` rather than two masked assignments.

SSIM is the processor's own measure (`adapters.vips.ssim`: Gaussian window,
mean over the RGB channels), so "equal or better SSIM" is judged by the same
ruler that `images/compress` searches with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyvips
from PIL import Image
from ssimulacra2 import compute_ssimulacra2
from ssimulacra2 import ssimulacra2 as s2

from adapters.vips.ssim import comparable, ssim

__all__ = ["Reference", "self_check"]


def _linear(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        rgb = np.array(image.convert("RGB"), dtype=np.float64) / 255.0
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def _xyb(linear: np.ndarray) -> np.ndarray:
    return s2.make_positive_xyb(s2.linear_rgb_to_xyb(linear))


class Reference:
    """One reference image, ready to score any number of candidates against it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._scales: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        linear = _linear(path)
        for scale in range(s2.kNumScales):
            xyb = _xyb(linear)
            if xyb.shape[0] < 8 or xyb.shape[1] < 8:
                break
            self._scales.append((xyb, s2.blur_image(xyb), s2.blur_image(xyb * xyb)))
            if scale < s2.kNumScales - 1:
                linear = s2.downsample(linear, 2, 2)
        self._vips = comparable(pyvips.Image.new_from_file(str(path), access="sequential"))

    def ssimulacra2(self, candidate: Path) -> float:
        """The SSIMULACRA2 score of ``candidate`` (100 = identical, higher is better)."""
        linear = _linear(candidate)
        msssim = s2.Msssim()
        for index, (img1, mu1, sigma1_sq) in enumerate(self._scales):
            img2 = _xyb(linear)
            mu2 = s2.blur_image(img2)
            scale = s2.MsssimScale()
            scale.avg_ssim = s2.ssim_map(
                mu1, mu2, sigma1_sq, s2.blur_image(img2 * img2), s2.blur_image(img1 * img2)
            )
            scale.avg_edgediff = s2.edge_diff_map(img1, mu1, img2, mu2)
            msssim.scales.append(scale)
            if index < len(self._scales) - 1:
                linear = s2.downsample(linear, 2, 2)
        return float(msssim.score())

    def ssim(self, candidate: Path) -> float:
        """The processor's SSIM of ``candidate`` (1 = identical)."""
        image = pyvips.Image.new_from_file(str(candidate), access="sequential")
        return ssim(self._vips, comparable(image))


def self_check(reference: Path, candidate: Path) -> float:
    """Check the cached scorer against the package's own function; return the difference."""
    ours = Reference(reference).ssimulacra2(candidate)
    theirs = float(compute_ssimulacra2(str(reference), str(candidate)))
    difference = abs(ours - theirs)
    if difference > 1e-6:
        raise RuntimeError(f"cached SSIMULACRA2 {ours} differs from the package's {theirs}")
    return difference
