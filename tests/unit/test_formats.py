"""Format sniffing from magic bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecore.formats import SNIFF_BYTES, sniff


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("photos/kite-2560x1600.jpg", "jpeg"),
        ("png/kay-1080x1920.png", "png"),
        ("webp/wood-4096x4096.webp", "webp"),
        ("misc/no_time_for_that_tiny.gif", "gif"),
        ("misc/multipage_rgb.tif", "tiff"),
        ("edge/hopper.avif", "avif"),
        ("edge/hopper.heif", "heif"),
        ("edge/tiff_16bit_RGBa.tiff", "tiff"),
    ],
)
def test_corpus_files_are_recognised(corpus: Path, path: str, expected: str) -> None:
    head = (corpus / path).read_bytes()[:SNIFF_BYTES]
    assert sniff(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        b"%PDF-1.7\n",
        b"BM\x00\x00",
        b"PK\x03\x04",
        b"P6\n10 10\n255\n",
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
        b"hello, world",
    ],
)
def test_anything_else_is_not_an_image_we_decode(head: bytes) -> None:
    assert sniff(head) is None


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    size = 16 + 4 * len(compatible)
    return size.to_bytes(4, "big") + b"ftyp" + major + b"\0\0\0\0" + b"".join(compatible)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (_ftyp(b"mif2", b"miaf"), "heif"),
        (_ftyp(b"heic", b"mif1", b"heic"), "heif"),
        (_ftyp(b"msf1", b"iso8"), "heif"),
        (_ftyp(b"mif1", b"avif", b"miaf"), "avif"),
        (_ftyp(b"avis", b"msf1"), "avif"),
    ],
)
def test_iso_media_is_named_by_its_brands(head: bytes, expected: str) -> None:
    assert sniff(head) == expected
