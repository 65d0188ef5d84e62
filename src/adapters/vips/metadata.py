"""Lossless metadata removal at the container level: JPEG segments, PNG/WebP chunks, GIF blocks.

Re-encoding to drop metadata costs a JPEG generation of quality and often
bytes, so strip-metadata, and compress when no encoding beats the input,
copy the compressed image data untouched and leave out the metadata
containers instead. Only an allow-list of structural segments survives:
anything unknown goes, because unknown is where private data hides.

The structural segments that survive are rebuilt, not copied, where they
could carry a payload: a JFIF APP0 loses its thumbnail (and anything hidden
after it), an Adobe APP14 keeps its 12 bytes, and a PNG keeps only the four
critical chunks it knows. So a polyglot (a PHP or HTML payload parked in a
segment a decoder skips) does not come out the other side.

This cannot apply an EXIF orientation (the pixels stay as stored), so
callers use it only for upright images. `strip` returns None when the bytes
do not parse as the container they claim to be; callers then re-encode.
"""

from __future__ import annotations

import struct
from typing import Final

import attrs

__all__ = ["Keep", "Stripped", "strip"]

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: Ancillary PNG chunks that describe how to show the pixels, not who made them.
_PNG_KEEP: Final = frozenset(
    {
        b"tRNS",
        b"gAMA",
        b"cHRM",
        b"sRGB",
        b"sBIT",
        b"bKGD",
        b"pHYs",
        b"hIST",
        b"sPLT",
        b"acTL",
        b"fcTL",
        b"fdAT",
        b"cICP",
        b"mDCv",
        b"cLLi",
    }
)
_PNG_CRITICAL: Final = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND"})
_WEBP_KEEP: Final = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"})
_VP8X_ICC, _VP8X_EXIF, _VP8X_XMP = 0x20, 0x08, 0x04
_JPEG_APP0, _JPEG_APP1, _JPEG_APP2, _JPEG_APP13, _JPEG_APP14 = 0xE0, 0xE1, 0xE2, 0xED, 0xEE
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
#: JFIF APP0 up to its thumbnail size fields: identifier, version, units, densities.
_JFIF_FIXED, _ADOBE_LENGTH = 12, 12
#: GIF application extensions that change how the frames play.
_GIF_PLAYBACK: Final = (b"NETSCAPE2.0", b"ANIMEXTS1.0")
_GIF_ICC: Final = b"ICCRGBG1012"
_GIF_TRAILER, _GIF_IMAGE, _GIF_EXTENSION = 0x3B, 0x2C, 0x21
_GIF_GRAPHIC_CONTROL, _GIF_APPLICATION = 0xF9, 0xFF


@attrs.frozen
class Keep:
    """Which metadata containers survive."""

    icc: bool = True
    exif: bool = False
    xmp: bool = False
    iptc: bool = False


@attrs.frozen
class Stripped:
    """The stripped bytes and the names of the containers left out."""

    data: bytes
    removed: tuple[str, ...]


def strip(data: bytes, fmt: str, keep: Keep) -> Stripped | None:
    """Remove metadata containers from JPEG, PNG or WebP bytes; None if not possible."""
    try:
        if fmt == "jpeg":
            return _strip_jpeg(data, keep)
        if fmt == "png":
            return _strip_png(data, keep)
        if fmt == "webp":
            return _strip_webp(data, keep)
        if fmt == "gif":
            return _strip_gif(data, keep)
    except (IndexError, ValueError, struct.error):
        return None
    return None


def _strip_jpeg(data: bytes, keep: Keep) -> Stripped | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    out, removed, pos = bytearray(b"\xff\xd8"), [], 2
    while pos < len(data):
        if data[pos] != 0xFF:  # noqa: PLR2004 - every segment starts with 0xFF
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # noqa: PLR2004 - fill byte before a marker
            pos += 1
            continue
        if marker == _JPEG_EOI:
            out += b"\xff\xd9"
            if pos + 2 < len(data):
                removed.append("trailing data")
            return Stripped(bytes(out), tuple(removed))
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        segment = data[pos:end]
        if marker == _JPEG_SOS:
            end = _entropy_end(data, end)
            out += data[pos:end]
        elif (kept := _kept_jpeg_segment(marker, segment, keep)) is not None:
            out += kept
            if kept != segment:
                removed.append(f"{_jpeg_name(marker, segment[4:])} extra data")
        else:
            removed.append(_jpeg_name(marker, segment[4:]))
        pos = end
    return None


def _entropy_end(data: bytes, pos: int) -> int:
    # Entropy-coded data escapes 0xFF as 0xFF00 and uses 0xFFD0-D7 as restart
    # markers; any other marker ends the scan.
    while True:
        pos = data.index(b"\xff", pos)
        following = data[pos + 1]
        if following == 0 or 0xD0 <= following <= 0xD7 or following == 0xFF:  # noqa: PLR2004
            pos += 1
            continue
        return pos


def _kept_jpeg_segment(marker: int, segment: bytes, keep: Keep) -> bytes | None:
    """The bytes to write for this segment, or None to leave it out."""
    payload = segment[4:]
    if marker == _JPEG_APP0:
        # JFIF says how to read the colours; its thumbnail and any tail are payload room.
        if not payload.startswith(b"JFIF\x00") or len(payload) < _JFIF_FIXED:
            return None
        return _jpeg_segment(marker, payload[:_JFIF_FIXED] + b"\x00\x00")
    if marker == _JPEG_APP14:
        if not payload.startswith(b"Adobe") or len(payload) < _ADOBE_LENGTH:
            return None
        return _jpeg_segment(marker, payload[:_ADOBE_LENGTH])
    if marker == _JPEG_APP1:
        is_xmp = payload.startswith(b"http://ns.adobe.com/")
        wanted = keep.xmp if is_xmp else keep.exif and payload.startswith(b"Exif\x00")
    elif marker == _JPEG_APP2:
        wanted = keep.icc and payload.startswith(b"ICC_PROFILE\x00")
    elif marker == _JPEG_APP13:
        wanted = keep.iptc
    else:
        # Other APPn and COM go; tables, frame headers and the rest of the structure stay.
        wanted = not (0xE3 <= marker <= 0xEF or marker == 0xFE)  # noqa: PLR2004 - APP3-15, COM
    return segment if wanted else None


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_name(marker: int, payload: bytes) -> str:
    if marker == 0xFE:  # noqa: PLR2004 - COM
        return "COM"
    label = payload[:12].split(b"\x00", 1)[0].decode("ascii", "replace")
    return f"APP{marker - _JPEG_APP0}" + (f" {label}" if label.isprintable() and label else "")


def _strip_png(data: bytes, keep: Keep) -> Stripped | None:
    if not data.startswith(_PNG_SIGNATURE):
        return None
    out, removed, pos = bytearray(_PNG_SIGNATURE), [], len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return None
        if kind[:1].isupper() and kind not in _PNG_CRITICAL:
            return None  # an unknown critical chunk: let a decoder judge the file
        wanted = (
            kind in _PNG_CRITICAL
            or kind in _PNG_KEEP
            or (kind == b"iCCP" and keep.icc)
            or (kind == b"eXIf" and keep.exif)
        )
        if wanted:
            out += data[pos:end]
        else:
            removed.append(kind.decode("ascii", "replace"))
        pos = end
        if kind == b"IEND":
            return Stripped(bytes(out), tuple(removed))
    return None


def _strip_webp(data: bytes, keep: Keep) -> Stripped | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunks, removed, pos = [], [], 12
    end_of_riff = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    while pos + 8 <= end_of_riff:
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        end = pos + 8 + size + (size & 1)
        wanted = (
            kind in _WEBP_KEEP
            or (kind == b"ICCP" and keep.icc)
            or (kind == b"EXIF" and keep.exif)
            or (kind == b"XMP " and keep.xmp)
        )
        if wanted:
            chunks.append(bytearray(data[pos:end]))
        else:
            removed.append(kind.decode("ascii", "replace").strip())
        pos = end
    kinds = {bytes(chunk[:4]) for chunk in chunks}
    for chunk in chunks:
        if chunk[:4] == b"VP8X":
            flags = chunk[8]
            for flag, kind in ((_VP8X_ICC, b"ICCP"), (_VP8X_EXIF, b"EXIF"), (_VP8X_XMP, b"XMP ")):
                flags = flags | flag if kind in kinds else flags & ~flag
            chunk[8] = flags
    body = b"WEBP" + b"".join(chunks)
    return Stripped(b"RIFF" + len(body).to_bytes(4, "little") + body, tuple(removed))


def _strip_gif(data: bytes, keep: Keep) -> Stripped | None:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        return None
    pos = 13 + (3 << ((data[10] & 0x07) + 1) if data[10] & 0x80 else 0)
    out = bytearray(data[:pos])
    removed: list[str] = []
    while pos < len(data):
        introducer = data[pos]
        if introducer == _GIF_TRAILER:
            out += b";"
            return Stripped(bytes(out), tuple(removed))
        if introducer == _GIF_IMAGE:
            flags = data[pos + 9]
            end = _gif_sub_blocks(
                data, pos + 10 + (3 << ((flags & 0x07) + 1) if flags & 0x80 else 0) + 1
            )
            out += data[pos:end]
        elif introducer == _GIF_EXTENSION:
            label, end = data[pos + 1], _gif_sub_blocks(data, pos + 2)
            application = data[pos + 3 : pos + 14] if label == _GIF_APPLICATION else b""
            if (
                label == _GIF_GRAPHIC_CONTROL
                or application in _GIF_PLAYBACK
                or (keep.icc and application == _GIF_ICC)
            ):
                out += data[pos:end]
            else:
                removed.append(application.decode("ascii", "replace") or f"extension 0x{label:02X}")
        else:
            return None
        pos = end
    return None


def _gif_sub_blocks(data: bytes, pos: int) -> int:
    """The offset just past the sub-block chain that starts at ``pos``."""
    while data[pos]:
        pos += data[pos] + 1
    return pos + 1
