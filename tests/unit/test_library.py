"""The public API as an embedder calls it: imagecore's names, its version, adapters.vips' calls."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import imagecore
from adapters.vips import ImagePool, Result, process_bytes, process_file
from entrypoints.cli import main
from imagecore import (
    CorruptImage,
    FileTooLarge,
    ImageCoreError,
    InvalidParameter,
    UnknownProduct,
    UnsupportedMediaType,
    errors,
)

PNG_HEAD = b"\x89PNG\r\n\x1a\n"


def test_imagecore_exports_the_domain_and_every_error() -> None:
    assert set(errors.__all__) - {"out_of_space"} <= set(imagecore.__all__)
    for name in imagecore.__all__:
        assert getattr(imagecore, name) is not None, name
    assert imagecore.find_product("images/resize") in imagecore.CATALOGUE


def test_the_version_is_the_package_s(capsys: pytest.CaptureFixture[str]) -> None:
    assert imagecore.__version__ == metadata.version("imagecore")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"imagecore {imagecore.__version__}\n"


def test_importing_the_pool_does_not_load_libvips() -> None:
    code = (
        "import adapters.vips.pool, adapters.vips, imagecore, sys; print('pyvips' in sys.modules)"
    )
    done = subprocess.run(  # noqa: S603 - this interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == "False\n"


def test_process_bytes_returns_the_result_in_memory(kite: bytes) -> None:
    result = process_bytes(kite, "images/resize", {"width": 100, "format": "png"})
    assert isinstance(result, Result)
    assert result.data.startswith(PNG_HEAD)
    assert (result.format, result.mime_type, result.extension) == ("png", "image/png", "png")
    assert (result.width, result.height) == (100, 62)
    assert (result.input.width, result.input.height) == (2560, 1600)
    assert result.metadata["input_size"] == len(kite)
    assert "bytes>" in repr(result)


def test_process_file_writes_the_destination(kite: bytes, tmp_path: Path) -> None:
    source = tmp_path / "kite.jpg"
    source.write_bytes(kite)
    result = process_file(source, tmp_path / "kite.webp", "images/convert", {"format": "webp"})
    assert (tmp_path / "kite.webp").stat().st_size == result.size
    assert result.format == "webp"


@pytest.mark.parametrize(
    ("data", "product", "params", "error"),
    [
        (b"\xff\xd8\xff", "images/nothing", {}, UnknownProduct),
        (b"\xff\xd8\xff", "images/resize", {"width": 0}, InvalidParameter),
        (b"%PDF-1.7 not an image", "images/compress", {}, UnsupportedMediaType),
        (b"\xff\xd8\xff\xe0" + bytes(100), "images/compress", {}, CorruptImage),
    ],
)
def test_process_bytes_raises_imagecore_errors(data, product, params, error) -> None:
    with pytest.raises(error):
        process_bytes(data, product, params)


def test_a_file_over_the_product_s_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with big.open("wb") as out:
        out.truncate(200 * 1024 * 1024 + 1)
    with pytest.raises(FileTooLarge):
        process_file(big, tmp_path / "out.jpg", "images/compress")


async def test_the_pool_processes_bytes_in_children(kite: bytes) -> None:
    async with ImagePool(workers=2, timeout_seconds=60) as pool:
        results = await asyncio.gather(
            pool.process_bytes(kite, "images/thumbnail", {"width": 64, "format": "webp"}),
            pool.process_bytes(kite, "images/rotate", {"angle": 90}),
            pool.process_bytes(b"%PDF-1.7", "images/rotate", {}),
            return_exceptions=True,
        )
    thumbnail, rotated, refused = results
    assert isinstance(thumbnail, Result)
    assert (thumbnail.format, thumbnail.width, thumbnail.height) == ("webp", 64, 40)
    assert isinstance(rotated, Result)
    assert (rotated.width, rotated.height) == (1600, 2560)
    assert isinstance(refused, UnsupportedMediaType)
    assert isinstance(refused, ImageCoreError)
