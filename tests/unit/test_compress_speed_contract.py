"""images/compress searches on a sample but reports, and meets, the full image's score.

The search judges qualities on a mosaic of tiles (`adapters.vips.compress`);
these tests recompute the score of what was written, on every pixel, with the
adapter's own measure (`adapters.vips.ssim`), and check the output against the
input's size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from adapters.vips.processor import VipsImageProcessor
from adapters.vips.ssim import comparable, ssim
from corpus import CORPUS, needs_corpus
from imagecore.ports import ProcessingRequest
from imagecore.products import find_product

PHOTOS = ["photos/coldripple-2560x1600.jpg", "photos/kite-2560x1600.jpg"]


def compress(source: Path, tmp_path: Path, **raw):
    product = find_product("images/compress")
    destination = tmp_path / f"compressed-{source.name}"
    result = VipsImageProcessor().process(
        ProcessingRequest(
            product.key,
            product.validate(raw),
            source,
            destination,
            product.limits.max_pixels,
            product.limits.max_frames,
        )
    )
    return result, destination


def full_image_ssim(source: Path, written: Path) -> float:
    return ssim(
        comparable(pyvips.Image.new_from_file(str(source))),
        comparable(pyvips.Image.new_from_file(str(written))),
    )


def synthetic_photo(path: Path, quality: int) -> Path:
    # Gradients, a hard edge and noise: something between a photo and a drawing,
    # small enough that the sample is the whole image.
    x, y = pyvips.Image.xyz(320, 208).bandsplit()
    noise = pyvips.Image.gaussnoise(320, 208, sigma=4)
    red = x * 0.7 + noise
    green = y * 1.1 + (x > 160) * 60
    blue = (x + y) * 0.4 + noise * 0.5
    image = red.bandjoin([green, blue]).cast("uchar").copy(interpretation="srgb")
    image.write_to_file(str(path), Q=quality)
    return path


def assert_full_image_contract(source: Path, result, written: Path, target: float = 0.98):
    assert result.size == written.stat().st_size <= source.stat().st_size
    if result.metadata["strategy"] == "reencoded":
        measured = full_image_ssim(source, written)
        assert result.metadata["ssim"] == pytest.approx(measured, abs=1e-5)
        assert result.metadata["target_met"] is (measured >= target)
    else:
        assert result.metadata["ssim"] == 1.0


@needs_corpus
@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: Path(p).stem)
def test_compressed_photo_reports_and_meets_its_full_image_score(tmp_path, photo):
    source = CORPUS / photo
    result, written = compress(source, tmp_path)
    assert result.metadata["strategy"] == "reencoded"
    assert result.metadata["target_met"] is True
    assert_full_image_contract(source, result, written)


@pytest.mark.parametrize(("fmt", "quality"), [("jpg", 95), ("webp", 95), ("jpg", 20)])
def test_compressed_synthetic_image_reports_its_full_score_and_never_grows(tmp_path, fmt, quality):
    source = synthetic_photo(tmp_path / f"drawing.{fmt}", quality)
    result, written = compress(source, tmp_path)
    assert_full_image_contract(source, result, written)


def test_a_stricter_target_is_met_on_the_full_image(tmp_path):
    source = synthetic_photo(tmp_path / "drawing.jpg", 95)
    result, written = compress(source, tmp_path, target_ssim=0.99)
    assert result.metadata["target_met"] is True
    assert_full_image_contract(source, result, written, target=0.99)
