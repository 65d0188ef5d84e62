"""The product catalogue and parameter validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoints.http.views import product_json
from imagecore.errors import InvalidParameter, UnknownProduct
from imagecore.model import is_object_id
from imagecore.products import CATALOGUE, find_product, product_id_for

REQUIRED_KEYS = {
    "images/compress",
    "images/convert",
    "images/resize",
    "images/crop",
    "images/rotate",
    "images/thumbnail",
    "images/strip-metadata",
    "images/metadata",
    "images/watermark",
}


def test_the_catalogue_has_every_product_of_the_spec() -> None:
    assert {p.key for p in CATALOGUE} == REQUIRED_KEYS


def test_product_ids_are_stable_object_ids() -> None:
    ids = [p.id for p in CATALOGUE]
    assert all(is_object_id(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert product_id_for("images/resize") == find_product("images/resize").id


def test_a_product_is_found_by_key_or_id() -> None:
    resize = find_product("images/resize")
    assert find_product(resize.id) is resize


def test_an_unknown_product_names_the_known_ones() -> None:
    with pytest.raises(UnknownProduct, match="images/resize"):
        find_product("images/sharpen")


def test_thumbnail_works_with_no_parameters() -> None:
    assert find_product("images/thumbnail").validate({}) == {
        "width": 256,
        "height": 256,
        "fit": "inside",
    }


def test_resize_fills_defaults_and_coerces_strings() -> None:
    params = find_product("images/resize").validate({"width": "512", "upscale": "yes"})
    assert params["width"] == 512
    assert params["upscale"] is True
    assert params["fit"] == "inside"
    assert "height" not in params


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("images/resize", {}, "give at least one of: width, height"),
        ("images/resize", {"width": 0}, "between 1 and 16384"),
        ("images/resize", {"width": 2.5}, "whole number"),
        ("images/resize", {"width": True}, "whole number"),
        ("images/resize", {"width": 10, "fit": "stretch"}, "must be one of inside"),
        ("images/resize", {"width": 10, "colour": "red"}, "not a parameter of this product"),
        ("images/convert", {}, "'format': is required"),
        ("images/convert", {"format": "bmp"}, "must be one of jpeg"),
        ("images/convert", {"format": "png", "quality": 101}, "between 1 and 100"),
        ("images/compress", {"target_ssim": "nan"}, "finite"),
        ("images/crop", {"aspect_ratio": "wide"}, "aspect ratio like 16:9"),
        ("images/crop", {"aspect_ratio": "16:0"}, "aspect ratio like 16:9"),
        ("images/watermark", {}, "give at least one of: text, image"),
        ("images/watermark", {"text": "x", "color": "blue"}, "hex colour"),
        ("images/watermark", {"text": "x" * 201}, "at most 200 characters"),
        ("images/rotate", {"flip": 3}, "must be one of none"),
    ],
)
def test_bad_parameters_say_what_is_wrong(key: str, raw: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        find_product(key).validate(raw)


def test_params_must_be_an_object() -> None:
    with pytest.raises(InvalidParameter, match="object"):
        find_product("images/resize").validate(["width", 5])  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=16384), st.integers(min_value=1, max_value=16384))
def test_any_width_and_height_in_range_is_accepted(width: int, height: int) -> None:
    params = find_product("images/resize").validate({"width": width, "height": str(height)})
    assert (params["width"], params["height"]) == (width, height)


@given(st.integers().filter(lambda n: not 1 <= n <= 100))
def test_any_quality_out_of_range_is_refused(quality: int) -> None:
    with pytest.raises(InvalidParameter, match="quality"):
        find_product("images/convert").validate({"format": "webp", "quality": quality})


def test_every_product_describes_itself_for_clients() -> None:
    for product in CATALOGUE:
        described = product_json(product)
        assert described["key"] == product.key
        assert described["limits"]["input_formats"]
        for param in described["parameters"]:
            assert {"name", "type", "description", "required", "default"} <= set(param)
