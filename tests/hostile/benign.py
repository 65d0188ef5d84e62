"""Odd but harmless uploads that must come out clean: lies, polyglots, EXIF, file names."""

from __future__ import annotations

import zlib
from typing import Any

from hostile import files as f
from hostile.model import Case, Done, Rejected

__all__ = ["cases"]


def _lies_and_polyglots() -> list[Case]:
    php = b"<?php system($_GET['cmd']); ?>"
    script = b"<script>alert(document.domain)</script>"
    zipped = f.zip_archive({"Evil.class": b"\xca\xfe\xba\xbe" + bytes(64)})
    html_png = f.png(
        1, 1, zlib.compress(b"\x00\x00"), extra=[f.png_chunk(b"tEXt", b"Comment\x00" + script)]
    )
    rows: list[tuple[str, bytes, str, str, Done, str, dict[str, Any]]] = [
        (
            "png-named-jpg",
            f.valid("png"),
            "photo.jpg",
            "image/jpeg",
            Done(mime_type="image/png"),
            "images/thumbnail",
            {},
        ),
        (
            "jpeg-named-gif",
            f.valid("jpeg"),
            "anim.gif",
            "image/gif",
            Done(mime_type="image/jpeg"),
            "images/thumbnail",
            {},
        ),
        (
            "jpeg-declared-html",
            f.valid("jpeg"),
            "index.html",
            "text/html",
            Done(mime_type="image/jpeg"),
            "images/thumbnail",
            {},
        ),
        (
            "webp-declared-svg",
            f.valid("webp"),
            "vector.svg",
            "image/svg+xml",
            Done(mime_type="image/webp"),
            "images/thumbnail",
            {},
        ),
        (
            "gifar",
            f.valid("gif") + zipped,
            "avatar.gif",
            "image/gif",
            Done(absent=(b"PK\x03\x04", b"Evil.class")),
            "images/thumbnail",
            {},
        ),
        (
            "gifar-strip-metadata",
            f.valid("gif") + zipped,
            "avatar.gif",
            "image/gif",
            Done(absent=(b"PK\x03\x04", b"Evil.class")),
            "images/strip-metadata",
            {},
        ),
        (
            "jpeg-php-in-comment",
            f.jpeg_insert(f.jpeg_segment(0xFE, php)),
            "avatar.jpg",
            "image/jpeg",
            Done(absent=(b"<?php",)),
            "images/thumbnail",
            {},
        ),
        (
            "jpeg-php-in-comment-strip",
            f.jpeg_insert(f.jpeg_segment(0xFE, php)),
            "avatar.jpg",
            "image/jpeg",
            Done(absent=(b"<?php",)),
            "images/strip-metadata",
            {},
        ),
        (
            "jpeg-php-in-app0",
            f.jpeg_insert(
                f.jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x01\x01" + php)
            ),
            "avatar.jpg",
            "image/jpeg",
            Done(absent=(b"<?php",)),
            "images/strip-metadata",
            {},
        ),
        (
            "jpeg-php-in-app14",
            f.jpeg_insert(f.jpeg_segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01" + php)),
            "avatar.jpg",
            "image/jpeg",
            Done(absent=(b"<?php",)),
            "images/strip-metadata",
            {},
        ),
        (
            "jpeg-html-after-eoi",
            f.valid("jpeg") + script,
            "avatar.jpg",
            "image/jpeg",
            Done(absent=(script,)),
            "images/strip-metadata",
            {},
        ),
        (
            "jpeg-pdf-polyglot",
            f.valid("jpeg") + b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF",
            "doc.jpg",
            "image/jpeg",
            Done(absent=(b"%PDF",)),
            "images/compress",
            {},
        ),
        (
            "png-html-in-text-chunk",
            html_png,
            "pixel.png",
            "image/png",
            Done(absent=(script,)),
            "images/strip-metadata",
            {},
        ),
        (
            "webp-html-after-riff",
            f.valid("webp") + script,
            "pic.webp",
            "image/webp",
            Done(absent=(script,)),
            "images/strip-metadata",
            {},
        ),
    ]
    return [
        Case(name, "lying-name-or-polyglot", data, fn, ct, expect, product, params)
        for name, data, fn, ct, expect, product, params in rows
    ]


def _exif() -> list[Case]:
    no_gps = (b"GPS", b"HostileCam")
    out = [
        Case(
            f"exif-orientation-{o}-with-gps",
            "exif",
            f.exif_jpeg(o),
            f"turned-{o}.jpg",
            "image/jpeg",
            Done(upright=True, absent=no_gps),
        )
        for o in range(2, 9)
    ]
    six = f.exif_jpeg(6)
    out += [
        Case(
            "exif-6-compress",
            "exif",
            six,
            "six.jpg",
            "image/jpeg",
            Done(upright=True, absent=no_gps),
            "images/compress",
        ),
        Case(
            "exif-6-strip-metadata",
            "exif",
            six,
            "six.jpg",
            "image/jpeg",
            Done(upright=True, absent=no_gps),
            "images/strip-metadata",
        ),
        Case(
            "exif-6-keep-metadata-webp",
            "exif",
            six,
            "six.jpg",
            "image/jpeg",
            Done(upright=True, absent=(b"GPS",)),
            "images/convert",
            {"format": "webp", "keep_metadata": True},
        ),
        Case(
            "exif-3-rotate-0",
            "exif",
            f.exif_jpeg(3),
            "three.jpg",
            "image/jpeg",
            Done(upright=True, absent=no_gps),
            "images/rotate",
            {"angle": 0},
        ),
        Case(
            "exif-garbage-app1",
            "exif",
            f.jpeg_insert(f.jpeg_segment(0xE1, b"Exif\x00\x00" + f.random_bytes(300, 9))),
            "junk-exif.jpg",
            "image/jpeg",
            Done(upright=True),
        ),
    ]
    return out


def _names() -> list[Case]:
    jpeg = f.valid("jpeg")
    rows = [
        ("unix-traversal", "../../etc/passwd.jpg", "passwd.jpg"),
        ("windows-traversal", "..\\..\\win.ini.png", "win.ini.png"),
        ("absolute-path", "/var/lib/imagecore/data/imagecore.sqlite3.jpg", "imagecore.sqlite3.jpg"),
        ("drive-letter", "C:\\Windows\\system.ini.jpg", "system.ini.jpg"),
        ("nul-byte", "evil\x00.php.jpg", "evil.php.jpg"),
        ("newline", "line\r\nX-Injected: yes.jpg", "lineX-Injected yes.jpg"),
        ("dot-dot-only", "..", "upload.jpg"),
        ("right-to-left-override", "photo\u202egnp.exe.jpg", "photognp.exe.jpg"),
        ("very-long", "a" * 1000 + ".jpg", "a" * 196 + ".jpg"),
        (
            "url-encoded-traversal",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd.jpg",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd.jpg",
        ),
    ]
    out = [
        Case(f"name-{name}", "hostile-file-name", jpeg, filename, "image/jpeg", Done(name=expected))
        for name, filename, expected in rows
    ]
    # A name longer than a header line may be (8 KiB) breaks the multipart part: a 400.
    header_bomb = Rejected(400, "multipart")
    out.append(
        Case(
            "name-header-bomb",
            "hostile-file-name",
            jpeg,
            "a" * 5000 + ".jpg",
            "image/jpeg",
            header_bomb,
        )
    )
    return out


def cases() -> list[Case]:
    """Lying names and polyglots, EXIF orientations with GPS, hostile file names."""
    return [*_lies_and_polyglots(), *_exif(), *_names()]
