"""Small images drawn with pyvips, and hand-made or hand-patched files of every kind."""

from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable

import pyvips

RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 30), (30, 30, 220), (250, 250, 250)
_W, _H = 48, 32


def picture(width: int = _W, height: int = _H) -> pyvips.Image:
    """Four coloured quadrants (red top-left): any flip or quarter turn shows."""
    half_w, half_h = width // 2, height // 2

    def block(w: int, h: int, colour: tuple[int, int, int]) -> pyvips.Image:
        return (pyvips.Image.black(w, h, bands=3) + list(colour)).cast("uchar")

    top = block(half_w, half_h, RED).join(block(width - half_w, half_h, GREEN), "horizontal")
    bottom = block(half_w, height - half_h, BLUE).join(
        block(width - half_w, height - half_h, WHITE), "horizontal"
    )
    return top.join(bottom, "vertical").copy(interpretation="srgb")


def quadrant_colours(image: pyvips.Image) -> list[tuple[int, ...]]:
    """The colour at the centre of each quadrant: top-left, top-right, bottom-left, bottom-right."""
    w, h = image.width, image.height
    points = [
        (w // 4, h // 4),
        (3 * w // 4, h // 4),
        (w // 4, 3 * h // 4),
        (3 * w // 4, 3 * h // 4),
    ]
    return [tuple(int(v) for v in image(x, y)[:3]) for x, y in points]


def _save(image: pyvips.Image, fmt: str) -> bytes:
    savers: dict[str, Callable[[], bytes]] = {
        "jpeg": lambda: image.jpegsave_buffer(Q=90, keep="none", interlace=False),
        "png": lambda: image.pngsave_buffer(keep="none"),
        "webp": lambda: image.webpsave_buffer(Q=80, keep="none"),
        "gif": lambda: image.gifsave_buffer(keep="none"),
        "tiff": lambda: image.tiffsave_buffer(keep="none"),
        "avif": lambda: image.heifsave_buffer(compression="av1", Q=50, effort=0, keep="none"),
    }
    return bytes(savers[fmt]())


@functools.cache
def valid(fmt: str) -> bytes:
    """A small, valid image of ``fmt``."""
    return _save(picture(), fmt)


# ----------------------------------------------------------------------------- hand-made files


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(width: int, height: int, idat: bytes, *, extra: Iterable[bytes] = ()) -> bytes:
    """An 8-bit greyscale PNG with the given dimensions and IDAT payload."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + b"".join(extra)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_zero_flood(width: int, height: int) -> bytes:
    """A valid all-black PNG whose IDAT deflates ``width*height`` bytes from a few KB."""
    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    body = b"".join(packer.compress(row) for _ in range(height))
    return png(width, height, body + packer.flush())


def jpeg_with_size(width: int, height: int, *, keep_scan: bool = True) -> bytes:
    """A baseline JPEG whose frame header (SOF0) is patched to ``width`` x ``height``."""
    data = bytearray(valid("jpeg"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    if not keep_scan:
        sos = data.index(b"\xff\xda")
        length = struct.unpack_from(">H", data, sos + 2)[0]
        return bytes(data[: sos + 2 + length]) + b"\x00" * 16 + b"\xff\xd9"
    return bytes(data)


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_insert(segment: bytes, base: bytes | None = None) -> bytes:
    """Insert a segment just after SOI."""
    data = base if base is not None else valid("jpeg")
    return data[:2] + segment + data[2:]


def jpeg_scan_bomb(repeats: int) -> bytes:
    """A progressive JPEG whose second scan is repeated ``repeats`` times.

    Every scan is decoded over the whole image, so thousands of cheap scans
    cost thousands of passes: the JPEG form of a decompression bomb.
    """
    data = bytes(picture(256, 256).jpegsave_buffer(Q=90, interlace=True, keep="none"))
    scans, pos = [], data.index(b"\xff\xda")
    while (pos := data.find(b"\xff\xda", pos)) != -1:
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        while (following := data[(end := data.index(b"\xff", end)) + 1]) == 0 or (
            0xD0 <= following <= 0xD7
        ):
            end += 1
        scans.append((pos, end))
        pos = end
    start, end = scans[1]
    return data[:end] + data[start:end] * repeats + data[end:]


_GIF_PIXEL = b"\x02\x02\x44\x01\x00"  # LZW: min code size 2, one sub-block coding a 1x1 frame


def gif(
    screen: tuple[int, int], frames: Iterable[tuple[int, int, int, int]], *, loop: bool = False
) -> bytes:
    """A GIF89a with a 2-colour table and 1x1-coded frames at (left, top, width, height)."""
    out = bytearray(b"GIF89a" + struct.pack("<HH", *screen) + b"\x80\x00\x00")
    out += b"\x00\x00\x00\xff\xff\xff"
    if loop:
        out += b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for left, top, width, height in frames:
        out += b"!\xf9\x04\x00\x00\x00\x00\x00"
        out += b"," + struct.pack("<HHHH", left, top, width, height) + b"\x00" + _GIF_PIXEL
    return bytes(out + b";")


def tiff(
    width: int,
    height: int,
    strip: bytes,
    *,
    next_ifd_loops: bool = False,
    declared_strip_bytes: int | None = None,
) -> bytes:
    """A little-endian 8-bit greyscale TIFF in one strip.

    ``next_ifd_loops`` points the IFD chain back at itself;
    ``declared_strip_bytes`` lets StripByteCounts claim more than is there.
    """
    ifd_offset, count = 8, 9
    strip_offset = ifd_offset + 2 + 12 * count + 4  # after the IFD: count, entries, next offset
    entries = [
        (256, 4, width),  # ImageWidth, LONG
        (257, 4, height),  # ImageLength
        (258, 3, 8),  # BitsPerSample, SHORT
        (259, 3, 1),  # Compression: none
        (262, 3, 1),  # Photometric: min-is-black
        (273, 4, strip_offset),  # StripOffsets
        (277, 3, 1),  # SamplesPerPixel
        (278, 4, height),  # RowsPerStrip
        (279, 4, declared_strip_bytes or len(strip)),  # StripByteCounts
    ]
    out = bytearray(b"II*\x00" + struct.pack("<IH", ifd_offset, count))
    for tag, kind, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + packed
    out += struct.pack("<I", ifd_offset if next_ifd_loops else 0)
    return bytes(out + strip)


def tiff_pages(pages: int) -> bytes:
    """A multi-page TIFF of ``pages`` 8x8 pages (pyvips writes one page per page-height)."""
    strip = pyvips.Image.black(8, 8 * pages).cast("uchar").copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 8)
    return bytes(strip.tiffsave_buffer(keep="none"))


def webp_animation(frames: int) -> bytes:
    """An animated WebP of ``frames`` 16x16 frames, each unlike the one before.

    (libwebp's animation encoder merges identical neighbouring frames.)
    """
    index = pyvips.Image.xyz(16, 16 * frames)[1] / 16
    strip = (index * 37 % 256).cast("uchar").copy(interpretation="b-w")
    strip.set_type(pyvips.GValue.gint_type, "page-height", 16)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [40] * frames)
    return bytes(strip.webpsave_buffer(Q=10, effort=0, keep="none"))


def webp_lossless_declaring(width: int, height: int) -> bytes:
    """A simple-format lossless WebP whose VP8L header is patched to ``width`` x ``height``."""
    data = bytearray(picture(16, 16).webpsave_buffer(lossless=True, keep="none"))
    assert data[12:16] == b"VP8L", "expected a simple-format lossless WebP"
    bits = struct.unpack_from("<I", data, 21)[0]
    bits = (bits & ~0x0FFFFFFF) | ((width - 1) & 0x3FFF) | (((height - 1) & 0x3FFF) << 14)
    struct.pack_into("<I", data, 21, bits)
    return bytes(data)


def avif_declaring(width: int, height: int) -> bytes:
    """A valid AVIF whose ``ispe`` (image spatial extents) box is patched."""
    data = bytearray(valid("avif"))
    at = data.index(b"ispe") + 8  # type, version and flags
    struct.pack_into(">II", data, at, width, height)
    return bytes(data)


#: An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15) for Main profile 4:2:0 8-bit,
#: with no parameter-set arrays.
_HVCC = bytes.fromhex("01 01 60000000 900000000000 5d f000 fc fd f8 f8 0000 0f 00")


def heic_hevc() -> bytes:
    """An HEIF whose image item is coded with HEVC (made from an AVIF by box surgery).

    The brands, the item type and the codec configuration box say HEVC; the
    grown ``hvcC`` box is paid for in the sizes of its parents and in the
    ``iloc`` offset of the coded data, so the container itself is valid.
    """
    data = bytearray(valid("avif"))
    at = data.index(b"av1C") - 4
    old_size = struct.unpack_from(">I", data, at)[0]
    hvcc = struct.pack(">I", 8 + len(_HVCC)) + b"hvcC" + _HVCC
    grow = len(hvcc) - old_size
    data[at : at + old_size] = hvcc
    for parent in (b"meta", b"iprp", b"ipco"):
        size_at = data.index(parent) - 4
        struct.pack_into(">I", data, size_at, struct.unpack_from(">I", data, size_at)[0] + grow)
    iloc = data.index(b"iloc")
    assert data[iloc + 8 : iloc + 10] == b"\x44\x40", "iloc with 4-byte offsets expected"
    extent = iloc + 22  # version/flags, sizes, count, item id, data ref, base offset, extent count
    struct.pack_into(">I", data, extent, struct.unpack_from(">I", data, extent)[0] + grow)
    for old, new in ((b"avif", b"heic"), (b"av01", b"hvc1")):
        data = bytearray(data.replace(old, new))
    return bytes(data)


def zip_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def bmp() -> bytes:
    pixels = bytes(4 * 2 * 2)
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 32, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


def ico() -> bytes:
    png = valid("png")
    entry = struct.pack("<BBBBHHII", 48, 32, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def psd() -> bytes:
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 32, 48, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(3 * 32 * 48)


def exif_jpeg(orientation: int, *, gps: bool = True) -> bytes:
    """A JPEG stored so that applying EXIF ``orientation`` shows `picture` upright, with GPS."""
    upright = picture()
    stored = next(
        candidate
        for candidate in _dihedral(upright)
        if _same(_oriented(candidate, orientation).autorot(), upright)
    )
    image = _oriented(stored, orientation)
    image.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Make", "HostileCam")
    if gps:
        for field, value in (
            ("GPSLatitudeRef", "N"),
            ("GPSLatitude", "51/1 30/1 1234/100"),
            ("GPSLongitudeRef", "W"),
            ("GPSLongitude", "0/1 7/1 3900/100"),
        ):
            image.set_type(pyvips.GValue.gstr_type, f"exif-ifd3-{field}", value)
    return bytes(image.jpegsave_buffer(Q=95, keep="all"))


def _oriented(image: pyvips.Image, orientation: int) -> pyvips.Image:
    image = image.copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    return image


def _dihedral(image: pyvips.Image) -> list[pyvips.Image]:
    turns = [image, image.rot90(), image.rot180(), image.rot270()]
    return turns + [turn.fliphor() for turn in turns]


def _same(a: pyvips.Image, b: pyvips.Image) -> bool:
    return (a.width, a.height) == (b.width, b.height) and (a - b).abs().max() == 0


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)
