"""The SSIM compress reports is Wang's measure, computed fast but not changed.

`adapters.vips.ssim` computes the blurs as banded matrix products in numpy.
The reference here is the straightforward form with libvips' own Gaussian
blur and float arithmetic (what the adapter computed before): the two must
agree to float rounding (1e-5, the precision compress reports) on photos,
drawings, alpha, grey and odd sizes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import pyvips

from adapters.vips.ssim import comparable, mosaic, ssim
from corpus import CORPUS, needs_corpus

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def reference_ssim(first: pyvips.Image, second: pyvips.Image) -> float:
    """Wang et al. (2004) with five libvips Gaussian blurs, averaged over pixels and bands."""
    a, b = first.cast("float"), second.cast("float")

    def blur(image: pyvips.Image) -> pyvips.Image:
        return image.gaussblur(1.5, min_ampl=0.01, precision="float")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    covariance = blur(a * b) - mu_a * mu_b
    numerator = (mu_a * mu_b * 2 + C1) * (covariance * 2 + C2)
    denominator = (mu_a * mu_a + mu_b * mu_b + C1) * (var_a + var_b + C2)
    return float((numerator / denominator).avg())


def noise(width: int, height: int, bands: int = 3, *, seed: int = 0) -> pyvips.Image:
    planes = [
        pyvips.Image.gaussnoise(width, height, sigma=40, mean=110 + 20 * band, seed=seed + band)
        for band in range(bands)
    ]
    return planes[0].bandjoin(planes[1:]).cast("uchar") if bands > 1 else planes[0].cast("uchar")


def jpeg_of(image: pyvips.Image, quality: int) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(image.jpegsave_buffer(Q=quality), "")


def both(first: pyvips.Image, second: pyvips.Image) -> tuple[float, float]:
    return ssim(comparable(first), comparable(second)), reference_ssim(
        comparable(first).image, comparable(second).image
    )


@pytest.mark.parametrize(
    ("width", "height"), [(1, 1), (3, 7), (40, 33), (100, 5), (33, 100), (257, 130)]
)
def test_score_is_wangs_ssim_at_any_size(width, height):
    image = noise(width, height).copy(interpretation="srgb")
    changed = (image * 0.5 + 30).cast("uchar")
    fast, slow = both(image, changed)
    assert fast == pytest.approx(slow, abs=1e-5)
    assert fast < 0.999  # the change is seen


def test_score_of_a_jpeg_encode_is_wangs_ssim_with_and_without_alpha():
    image = noise(160, 96).copy(interpretation="srgb")
    for quality in (30, 75, 95):
        fast, slow = both(image, jpeg_of(image, quality))
        assert fast == pytest.approx(slow, abs=1e-5)
    alpha = noise(160, 96, bands=1, seed=7)
    with_alpha = image.bandjoin(alpha).copy(interpretation="srgb")
    blurred = with_alpha.gaussblur(1.2).cast("uchar")
    fast, slow = both(with_alpha, blurred)
    assert comparable(with_alpha).planes.shape == (4, 96, 160)
    assert fast == pytest.approx(slow, abs=1e-5)


@needs_corpus
def test_score_of_a_photo_is_wangs_ssim_to_float_rounding():
    photo = pyvips.Image.new_from_file(str(CORPUS / "photos/bythewater-2560x1600.jpg"))
    photo = photo.crop(600, 400, 1024, 768).copy_memory()
    encoded = jpeg_of(photo, 70)
    fast, slow = both(photo, encoded)
    assert 0.9 < fast < 0.999
    assert fast == pytest.approx(slow, abs=1e-5)
    sample = mosaic(photo, tile=128)
    assert sample.width < photo.width  # the mosaic is a true sample here
    fast, slow = both(sample, mosaic(encoded, tile=128))
    assert fast == pytest.approx(slow, abs=1e-5)


def test_an_image_is_identical_to_itself_and_not_to_another():
    image = noise(120, 80).copy(interpretation="srgb")
    assert ssim(comparable(image), comparable(image)) == pytest.approx(1.0, abs=1e-12)
    assert ssim(comparable(image), comparable(noise(120, 80, seed=10))) < 0.5


def test_a_grey_encode_of_a_colour_image_is_compared_on_luminance():
    image = noise(64, 48).copy(interpretation="srgb")
    grey = image.colourspace("b-w")
    score = ssim(comparable(image), comparable(grey))
    assert score == pytest.approx(1.0, abs=1e-3)
    assert comparable(grey).planes.shape == (1, 48, 64)


def test_imagecores_own_processes_hold_blas_to_one_thread():
    # A fresh process: the limit is process-wide and for good.
    script = (
        "from threadpoolctl import threadpool_info\n"
        "from adapters.vips.processor import configure_vips\n"
        "configure_vips()\n"
        "print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))\n"
    )
    shown = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "[1]"
