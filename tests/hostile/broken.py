"""Uploads that must be refused (4xx) or end FAILED with a reason."""

from __future__ import annotations

import zlib

from hostile import files as f
from hostile.model import CRASH_MARKER, MAX_FILE_BYTES, Case, Done, Failed, Rejected

__all__ = ["cases"]

_CORRUPT = frozenset({"corrupt_image"})
_TOO_LARGE = frozenset({"image_too_large"})
_MAGIC = {
    "jpeg": b"\xff\xd8\xff\xe0",
    "png": b"\x89PNG\r\n\x1a\n",
    "gif": b"GIF89a",
    "webp": b"RIFF\x00\x10\x00\x00WEBPVP8 ",
    "tiff": b"II*\x00",
    "avif": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
}
_MIME = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "avif": "image/avif",
}
_EXT = {"jpeg": "jpg", "png": "png", "gif": "gif", "webp": "webp", "tiff": "tif", "avif": "avif"}
#: Where the truncation cases cut each valid file, as a fraction of its length.
_CUTS = (0.05, 0.5, 0.9)


def _not_decoded() -> list[Case]:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000">'
        b"<script>alert(1)</script></svg>"
    )
    xml_svg = b'<?xml version="1.0" encoding="UTF-8"?>\n' + svg
    rows = [
        ("svg", svg, "drawing.svg", "image/svg+xml"),
        ("svg-xml-header", xml_svg, "drawing.svg", "image/svg+xml"),
        ("svg-named-png", xml_svg, "innocent.png", "image/png"),
        ("svg-with-bom", b"\xef\xbb\xbf" + xml_svg, "bom.svg", "image/svg+xml"),
        (
            "pdf",
            b"%PDF-1.7\n1 0 obj <</Type /Catalog>> endobj\ntrailer <</Root 1 0 R>>\n%%EOF\n",
            "paper.pdf",
            "application/pdf",
        ),
        (
            "postscript",
            b"%!PS-Adobe-3.0\n/Helvetica findfont 12 scalefont setfont\nshowpage\n",
            "print.ps",
            "application/postscript",
        ),
        (
            "eps",
            b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
            "figure.eps",
            "image/x-eps",
        ),
        (
            "eps-binary-header",
            b"\xc5\xd0\xd3\xc6" + bytes(28) + b"%!PS-Adobe-3.0",
            "figure.eps",
            "image/jpeg",
        ),
        ("bmp", f.bmp(), "bitmap.bmp", "image/bmp"),
        ("ppm", b"P6\n48 32\n255\n" + bytes(48 * 32 * 3), "pixels.ppm", "image/x-portable-pixmap"),
        ("pgm-ascii", b"P2\n2 2\n255\n0 1\n2 3\n", "pixels.pgm", "image/x-portable-graymap"),
        ("ico", f.ico(), "favicon.ico", "image/x-icon"),
        ("psd", f.psd(), "layers.psd", "image/vnd.adobe.photoshop"),
        ("jpeg-xl", b"\xff\x0a" + f.random_bytes(200, 1), "photo.jxl", "image/jxl"),
        (
            "jpeg-2000",
            b"\x00\x00\x00\x0cjP  \r\n\x87\n" + f.random_bytes(200, 2),
            "photo.jp2",
            "image/jp2",
        ),
        (
            "mp4",
            b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + f.random_bytes(200, 3),
            "clip.mp4",
            "video/mp4",
        ),
        (
            "vips-native",
            b"\x08\xf2\xa6\xb6" + f.random_bytes(200, 4),
            "image.v",
            "application/octet-stream",
        ),
        ("csv-matrix", b"1,2,3\n4,5,6\n", "matrix.csv", "text/csv"),
        (
            "html",
            b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>",
            "page.html",
            "text/html",
        ),
        (
            "html-named-jpg",
            b"<html><script>alert(1)</script></html>" + b" " * 64,
            "photo.jpg",
            "image/jpeg",
        ),
        (
            "php-named-jpg",
            b"<?php system($_GET['c']); ?>" + b" " * 64,
            "shell.php.jpg",
            "image/jpeg",
        ),
        ("zip", f.zip_archive({"a.jpg": f.valid("jpeg")}), "photos.zip", "application/zip"),
        (
            "zip-bomb",
            f.zip_archive({"zeros.bin": bytes(32 * 1024 * 1024)}),
            "bomb.zip",
            "application/zip",
        ),
        ("gzip-bomb", zlib.compress(bytes(16 * 1024 * 1024), 9), "bomb.gz", "application/gzip"),
        ("one-byte", b"\xff", "tiny.jpg", "image/jpeg"),
        ("text", b"just words, no picture at all", "notes.txt", "text/plain"),
    ]
    out = [
        Case(name, "not-an-image", data, fn, ct, Rejected(415, "format"))
        for name, data, fn, ct in rows
    ]
    out.append(Case("empty", "empty", b"", "empty.jpg", "image/jpeg", Rejected(400, "empty")))
    padded = f.valid("jpeg") + bytes(MAX_FILE_BYTES + 1024)
    out.append(
        Case(
            "over-the-size-cap",
            "too-big-upload",
            padded,
            "big.jpg",
            "image/jpeg",
            Rejected(413, "larger than"),
        )
    )
    return out


def _floods() -> list[Case]:
    rows = [
        ("png-100000x100000", f.png(100_000, 100_000, zlib.compress(bytes(64))), "png"),
        ("png-just-over-limit", f.png(10_001, 10_000, zlib.compress(bytes(64))), "png"),
        ("jpeg-65500x65500", f.jpeg_with_size(65_500, 65_500), "jpeg"),
        ("jpeg-12000x12000", f.jpeg_with_size(12_000, 12_000, keep_scan=False), "jpeg"),
        ("gif-65535x65535-screen", f.gif((65_535, 65_535), [(0, 0, 1, 1)]), "gif"),
        (
            "gif-frame-far-off-screen",
            f.gif((32, 32), [(0, 0, 1, 1), (65_000, 65_000, 1, 1)]),
            "gif",
        ),
        ("gif-animation-bomb", f.gif((64, 64), [(0, 0, 1, 1)] * 5000, loop=True), "gif"),
        ("gif-frames-times-pixels", f.gif((2000, 2000), [(0, 0, 1, 1)] * 30, loop=True), "gif"),
        ("webp-12000x12000", f.webp_lossless_declaring(12_000, 12_000), "webp"),
        ("webp-animation-bomb", f.webp_animation(2000), "webp"),
        ("tiff-100000x100000", f.tiff(100_000, 100_000, bytes(16)), "tiff"),
        ("tiff-2000-pages", f.tiff_pages(2000), "tiff"),
        ("avif-60000x60000", f.avif_declaring(60_000, 60_000), "avif"),
    ]
    out = [
        Case(
            name,
            "pixel-or-frame-flood",
            data,
            f"{name}.{_EXT[fmt]}",
            _MIME[fmt],
            Failed(_TOO_LARGE),
        )
        for name, data, fmt in rows
    ]
    # Floods at the limit are legal: they must be processed, within bounded memory.
    zeros = f.png_zero_flood(10_000, 10_000)
    empty_scan = f.jpeg_with_size(10_000, 10_000, keep_scan=False)
    legal = [
        ("png-100mp-zeros-thumbnail", zeros, "png", "images/thumbnail", {}, False),
        ("jpeg-100mp-empty-scan", empty_scan, "jpeg", "images/thumbnail", {}, False),
        (
            "gif-100mp-screen",
            f.gif((10_000, 10_000), [(0, 0, 1, 1)]),
            "gif",
            "images/thumbnail",
            {},
            False,
        ),
        ("png-100mp-zeros-to-webp", zeros, "png", "images/convert", {"format": "webp"}, True),
    ]
    out += [
        Case(
            name,
            "legal-flood",
            data,
            f"{name}.{_EXT[fmt]}",
            _MIME[fmt],
            Done(),
            product,
            params,
            slow=slow,
        )
        for name, data, fmt, product, params, slow in legal
    ]
    return out


def _truncated() -> list[Case]:
    out = []
    for fmt, mime in _MIME.items():
        whole = f.valid(fmt)
        for cut in _CUTS:
            size = max(16, int(len(whole) * cut))
            out.append(
                Case(
                    f"{fmt}-cut-at-{int(cut * 100)}pct",
                    "truncated",
                    whole[:size],
                    f"cut.{_EXT[fmt]}",
                    mime,
                    Failed(_CORRUPT),
                )
            )
    return out


def _garbage_behind_magic() -> list[Case]:
    return [
        Case(
            f"{fmt}-magic-then-random",
            "random-behind-magic",
            magic + f.random_bytes(4096, seed),
            f"noise.{_EXT[fmt]}",
            _MIME[fmt],
            # A random GIF screen is most likely too large before it is broken.
            Failed(_TOO_LARGE if fmt == "gif" else _CORRUPT),
        )
        for seed, (fmt, magic) in enumerate(_MAGIC.items())
    ]


def _malformed() -> list[Case]:
    png = bytearray(f.valid("png"))
    png[png.index(b"IDAT") + 8] ^= 0xFF  # the IDAT's CRC no longer matches
    rows = [
        ("png-bad-idat-crc", bytes(png), "png", _CORRUPT),
        ("png-0x0", f.png(0, 0, zlib.compress(b"")), "png", _CORRUPT),
        ("jpeg-0x0", f.jpeg_with_size(0, 0), "jpeg", _CORRUPT),
        ("jpeg-scan-bomb", f.jpeg_scan_bomb(20_000), "jpeg", _CORRUPT),
        (
            "tiff-strip-past-eof",
            f.tiff(64, 64, bytes(16), declared_strip_bytes=4096),
            "tiff",
            _CORRUPT,
        ),
        ("webp-16384x16384", f.webp_lossless_declaring(16_384, 16_384), "webp", _CORRUPT),
        ("heic-with-hevc", f.heic_hevc(), "avif", frozenset({"unsupported_media_type"})),
        # Only the integration test arms the crash hook (tests/crash_hook.py).
        (
            "decoder-killer",
            f.valid("jpeg") + CRASH_MARKER,
            "jpeg",
            frozenset({"processor_crashed"}),
        ),
    ]
    return [
        Case(
            name,
            "decoder-crash" if name == "decoder-killer" else "malformed",
            data,
            f"{name}.{_EXT[fmt]}",
            _MIME[fmt],
            Failed(codes),
            in_process=name != "decoder-killer",
        )
        for name, data, fmt, codes in rows
    ]


def cases() -> list[Case]:
    """Refusals, floods, truncations, noise behind a signature, malformed files."""
    return [*_not_decoded(), *_floods(), *_truncated(), *_garbage_behind_magic(), *_malformed()]
