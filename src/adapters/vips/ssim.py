"""Structural similarity (SSIM): libvips prepares the pixels, numpy computes the score.

The compress product searches for the lowest quality whose output keeps a
target SSIM against the input. The measure is Wang et al. (2004): Gaussian
window (sigma 1.5, libvips' ``gaussmat`` with ``min_ampl`` 0.01, edges
extended by copying), C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255, averaged
over the image and then over the sRGB channels (and alpha, when present).
Channel-wise rather than luma-only on purpose: 4:2:0 chroma subsampling
ruins saturated edges that luma SSIM does not see (a red subject scored
0.994 on luma and 0.94 on its blue-difference channel).

The blurs are most of the cost and libvips' float convolution is scalar, so
the score is computed with numpy on windows of rows and columns that stay
in the cache, each blur a product with a banded matrix (BLAS): the same
measure to float rounding (docs/decisions/0018).

`mosaic` cuts a large image into a grid of full-resolution tiles so a search
costs a fraction of a full encode while still seeing the real artefacts
(downscaling would average them away); the caller verifies the chosen
quality once on the whole image.
"""

from __future__ import annotations

import functools
from typing import Final

import attrs
import numpy as np
import numpy.typing as npt
import pyvips
from numpy.lib.stride_tricks import as_strided
from threadpoolctl import threadpool_limits

__all__ = ["Pixels", "comparable", "mosaic", "one_blas_thread", "ssim"]

_C1: Final = (0.01 * 255) ** 2
_C2: Final = (0.03 * 255) ** 2
_SIGMA: Final = 1.5
_MIN_AMPLITUDE: Final = 0.01
#: Rows and columns of the windows the score is computed on, one at a time:
#: their four blurred terms of every band stay in the cache, and memory does
#: not grow with the image. Columns go by blocks of the banded product.
_STRIP: Final = 16
_CHUNK: Final = 256
_BLOCK: Final = 32
#: Tiles are multiples of 16 and start on multiples of 16 so that JPEG
#: blocks and chroma subsampling line up with the full image's.
_TILE: Final = 256
_GRID: Final = 4

Pixels8 = npt.NDArray[np.uint8]


@attrs.frozen(eq=False)
class Pixels:
    """An image ready to compare: its 8-bit pixels in memory, one plane per band."""

    planes: Pixels8

    @property
    def image(self) -> pyvips.Image:
        """The pixels as a libvips image (sRGB from three bands or more, else grey)."""
        bands, height, width = self.planes.shape
        pixels = np.ascontiguousarray(self.planes.transpose(1, 2, 0))
        image = pyvips.Image.new_from_memory(pixels.data, width, height, bands, "uchar")
        return image.copy(interpretation="srgb" if bands >= 3 else "b-w")  # noqa: PLR2004 - RGB


def comparable(image: pyvips.Image) -> Pixels:
    """8-bit sRGB (or grey) bands, alpha last, so two encodings compare like for like."""
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
    pixels = np.frombuffer(image.write_to_memory(), np.uint8)
    pixels = pixels.reshape(int(image.height), int(image.width), int(image.bands))
    # Planes: every window of the score then reads rows of contiguous bytes.
    return Pixels(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def ssim(reference: Pixels, candidate: Pixels) -> float:
    """Mean SSIM of two `comparable` images of the same size."""
    a, b = reference, candidate
    if a.planes.shape[0] != b.planes.shape[0]:
        a, b = comparable(_grey(a.image)), comparable(_grey(b.image))
    return _mean_ssim(a.planes, b.planes)


def one_blas_thread() -> None:
    """Hold numpy's BLAS to one thread, for the whole process and for good.

    The score's products are small: a second thread gains no time and spins
    on the CPU. Process-wide, so only for processes imagecore owns (see
    `adapters.vips.guard.configure_vips`); in a host's process the score is
    the same, at the CPU its BLAS spends.
    """
    threadpool_limits(limits=1, user_api="blas")


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


def _mean_ssim(a: Pixels8, b: Pixels8) -> float:
    """Wang's mean SSIM over every pixel of every band, a window of rows and columns at a time."""
    _bands, height, width = a.shape
    radius = _kernel().size // 2
    total = 0.0
    for top in range(0, height, _STRIP):
        rows = min(_STRIP, height - top)
        around = _around(top - radius, top + rows + radius, height)
        strip_a, strip_b = a[:, around], b[:, around]
        for left in range(0, width, _CHUNK):
            columns = min(_CHUNK, width - left)
            blocks = -(-columns // _BLOCK)
            beside = _around(left - radius, left + blocks * _BLOCK + radius, width)
            total += _window_sum(strip_a[:, :, beside], strip_b[:, :, beside], rows, columns)
    return float(total / a.size)


def _around(start: int, stop: int, size: int) -> slice | npt.NDArray[np.intp]:
    """Indices start..stop-1 of an axis of ``size``, the end repeated beyond it as libvips does."""
    if start >= 0 and stop <= size:
        return slice(start, stop)  # a view, no copy
    return np.clip(np.arange(start, stop), 0, size - 1)


def _window_sum(a: Pixels8, b: Pixels8, rows: int, columns: int) -> float:
    """The sum of the SSIM map over ``rows`` x ``columns`` pixels of every band.

    ``a`` and ``b`` hold those pixels with a margin of the window's radius
    on every side, and columns enough on the right to fill whole blocks.
    The terms come from the blurs of the sum and the difference of the two
    images: four blurs instead of five. With s = a + b and d = a - b:
    2 mu_a mu_b = (mu_s^2 - mu_d^2) / 2, mu_a^2 + mu_b^2 = (mu_s^2 + mu_d^2) / 2,
    and the same for the second moments; the halves cancel in the ratio, and
    2 C2 is added to s^2 before its blur (the window sums to one).
    """
    radius = _kernel().size // 2
    bands, width = a.shape[0], a.shape[2]
    blocks = (width - 2 * radius) // _BLOCK
    first, second = a.astype(np.float32), b.astype(np.float32)
    terms = np.empty((4, *first.shape), np.float32)
    np.add(first, second, out=terms[0])
    np.subtract(first, second, out=terms[1])
    np.multiply(terms[0], terms[0], out=terms[2])
    terms[2] += 2 * _C2
    np.multiply(terms[1], terms[1], out=terms[3])
    # Down the columns: one banded product for every plane at once.
    down = np.matmul(_band_matrix(rows), terms.reshape(4 * bands, rows + 2 * radius, width))
    # Along the rows: the overlapping windows of every block, one product for all.
    flat = down.reshape(-1, width)
    windows = as_strided(
        flat,
        (flat.shape[0], blocks, _BLOCK + 2 * radius),
        (flat.strides[0], _BLOCK * flat.itemsize, flat.itemsize),
        writeable=False,
    )
    blurred = (windows.reshape(-1, _BLOCK + 2 * radius) @ _across()).reshape(
        4, bands * rows, blocks * _BLOCK
    )[:, :, :columns]
    mean_s, mean_d, moment_s, moment_d = blurred
    squared_s, squared_d = mean_s * mean_s, mean_d * mean_d
    luminance = squared_s - squared_d
    spread = np.add(squared_s, squared_d, out=squared_s)
    structure = moment_s - moment_d
    structure -= luminance
    contrast = moment_s + moment_d
    contrast -= spread
    luminance += 2 * _C1
    spread += 2 * _C1
    luminance *= structure
    spread *= contrast
    luminance /= spread
    return float(luminance.sum(dtype=np.float64))


@functools.cache
def _kernel() -> npt.NDArray[np.float32]:
    """The window: libvips' separable Gaussian, normalised to sum to one."""
    mask = pyvips.Image.gaussmat(_SIGMA, _MIN_AMPLITUDE, separable=True, precision="float")
    weights = np.array(mask.tolist()[0], np.float64)
    normalised: npt.NDArray[np.float32] = (weights / weights.sum()).astype(np.float32)
    normalised.flags.writeable = False  # shared by every call
    return normalised


@functools.cache
def _band_matrix(size: int) -> npt.NDArray[np.float32]:
    """(size, size + 2r): row i holds the window at columns i..i + 2r, so M @ x blurs x."""
    kernel = _kernel()
    matrix = np.zeros((size, size + kernel.size - 1), np.float32)
    for row in range(size):
        matrix[row, row : row + kernel.size] = kernel
    matrix.flags.writeable = False  # shared by every call
    return matrix


@functools.cache
def _across() -> npt.NDArray[np.float32]:
    """The banded matrix of one block, transposed: ``x @ it`` blurs the rows of x."""
    matrix = _band_matrix(_BLOCK).T.copy()
    matrix.flags.writeable = False  # shared by every call
    return matrix


def _aligned(offset: int) -> int:
    return max(0, offset - offset % 16)


def _grey(image: pyvips.Image) -> pyvips.Image:
    # One side lost its colour (a grey encode of a colour source): compare
    # luminance only rather than refuse to compare.
    shown = image.extract_band(0, n=3) if image.bands >= 3 else image.extract_band(0)  # noqa: PLR2004 - RGB
    if shown.bands == 3:  # noqa: PLR2004 - RGB
        shown = shown.copy(interpretation="srgb").colourspace("b-w")
    return shown
