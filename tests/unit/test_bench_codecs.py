"""The benchmark's codec costs (`bench.codecs`): each library's steps do the work they
are timed for, libvips exactly the floor's, Pillow what thumbor's engine does."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bench.codecs import _differences, _pillow_steps, _vips_steps
from bench.workloads import _floor_one
from corpus import PHOTOS, require


@pytest.fixture
def photo() -> Path:
    require()
    return PHOTOS[0]


@pytest.mark.parametrize(("key", "fmt"), [("W1", "jpeg"), ("W2", "webp")])
def test_the_libvips_steps_end_in_the_floors_bytes(
    photo: Path, tmp_path: Path, key: str, fmt: str
) -> None:
    floor_out = tmp_path / "floor.out"
    _floor_one(key, photo, floor_out)

    steps = _vips_steps(photo, fmt)

    assert steps[-1]() == floor_out.read_bytes()


def test_the_pillow_steps_decode_small_and_end_in_a_progressive_jpeg_of_the_floors_size(
    photo: Path, tmp_path: Path
) -> None:
    floor_out = tmp_path / "floor.out"
    _floor_one("W1", photo, floor_out)
    with Image.open(floor_out) as floor_image:
        size = floor_image.size

    decode, resize, encode = _pillow_steps(photo, "JPEG")

    decoded = decode()
    assert isinstance(decoded, Image.Image)
    with Image.open(photo) as full:
        # draft: decoded at a reduced scale, still at least the target size
        assert size[0] <= decoded.width < full.width
    resized = resize()
    assert isinstance(resized, Image.Image)
    assert resized.size == size
    data = encode()
    assert isinstance(data, bytes)
    with Image.open(io.BytesIO(data)) as out:
        assert out.format == "JPEG"
        assert out.size == size
        assert out.info.get("progressive") == 1


def test_step_costs_are_the_differences_of_the_cumulative_timings() -> None:
    assert _differences([2.0, 5.0, 9.5]) == [2.0, 3.0, 4.5]
