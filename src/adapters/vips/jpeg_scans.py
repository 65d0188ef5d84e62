"""A progressive JPEG for a 1/8-scale decode, without the scans that decode cannot use.

At 1/8 scale libjpeg turns each 8x8 block of a component sampled at the
frame's full resolution into one pixel computed from the block's DC
coefficient alone (its 1x1 inverse DCT); the AC coefficients are decoded and
thrown away. A progressive file sends the DC coefficients in scans of their
own, often a tenth of its bytes, so for those components the AC scans can be
left out of the decode.

Dropping them is not enough: libjpeg would see coefficients that never
arrived and "smooth" the blocks, guessing them from the neighbours (slower,
and other pixels). So each such component gets one small AC scan instead,
which codes every block as all-zero with end-of-band runs: every coefficient
is then known, no smoothing happens, and the pixels are the ones the whole
file gives at 1/8 scale (the tests compare them bit for bit).

A component sampled below full resolution (the chroma of 4:2:0) keeps all
of its scans: at 1/8 scale libjpeg decodes it with a larger IDCT, which reads
AC coefficients. Anything else out of the ordinary (a baseline or arithmetic
coded frame, a scan script that leaves coefficients out or refines them out
of order, fill bytes, a truncated file) gives None, and the caller decodes
the file as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

import attrs

__all__ = ["dc_scans_only"]

_SOI: Final = b"\xff\xd8"
_EOI: Final = 0xD9
_SOS: Final = 0xDA
_PROGRESSIVE_HUFFMAN: Final = 0xC2
#: Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_FRAMES: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: The marker that ends a scan's entropy-coded data (0xFF00 is a stuffed byte,
#: 0xFFD0-D7 a restart marker inside the scan).
_NEXT_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_COEFFICIENTS: Final = 64
_LONGEST_RUN: Final = 32767  # EOB14 with 14 extra bits
_LOWEST_BIT: Final = 13  # the largest point transform libjpeg accepts
_ZERO_TABLE: Final = 3  # the AC table the added scans use, defined after every real scan
#: AC table 3 holding the 15 end-of-band-run symbols EOB0..EOB14, each coded on
#: 4 bits: symbol EOBn gets code n.
_ZERO_DHT: Final = (
    b"\xff\xc4\x00\x22"
    + bytes([0x10 | _ZERO_TABLE, 0, 0, 0, 15] + [0] * 12)
    + bytes(n << 4 for n in range(15))
)
_NO_RESTARTS: Final = b"\xff\xdd\x00\x04\x00\x00"


@attrs.frozen
class _Component:
    ident: int
    h: int
    v: int


@attrs.frozen
class _Frame:
    width: int
    height: int
    components: tuple[_Component, ...]

    def full_resolution(self) -> set[int]:
        """The components sampled as finely as the frame allows (one pixel per block at 1/8)."""
        h_max = max(c.h for c in self.components)
        v_max = max(c.v for c in self.components)
        return {c.ident for c in self.components if (c.h, c.v) == (h_max, v_max)}

    def blocks(self) -> int:
        """Blocks in one non-interleaved scan of a full-resolution component."""
        return -(-self.width // 8) * -(-self.height // 8)


class _LeftAlone(Exception):
    """The file is not one the rewrite handles."""


def dc_scans_only(data: bytes) -> bytes | None:
    """``data`` rewritten for a 1/8-scale decode, or None if it is not a file this can help.

    The result decodes at 1/8 scale to exactly the pixels of ``data``. Only a
    complete progressive Huffman-coded JPEG gives a result: every coefficient
    of every component sent to full precision, so each component sampled at
    full resolution has AC scans to leave out.
    """
    try:
        return _rewrite(data)
    except _LeftAlone:
        return None


def _rewrite(data: bytes) -> bytes:
    kept = [_SOI]
    frame: _Frame | None = None
    full: set[int] = set()
    known: dict[int, list[int]] = {}
    for marker, start, header_end, end in _segments(data):
        if marker in _FRAMES:
            if marker != _PROGRESSIVE_HUFFMAN or frame is not None:
                raise _LeftAlone
            frame = _read_frame(data[start + 4 : end])
            full = frame.full_resolution()
            known = {c.ident: [-1] * _COEFFICIENTS for c in frame.components}
        elif marker == _SOS:
            if frame is None:
                raise _LeftAlone
            components, first = _read_scan(data[start + 4 : header_end], known)
            if first > 0 and components <= full:
                continue
        kept.append(data[start:end])
    if frame is None or any(bit != 0 for bits in known.values() for bit in bits):
        raise _LeftAlone
    kept += [_ZERO_DHT, _NO_RESTARTS]
    kept += [_zero_scan(ident, frame.blocks()) for ident in sorted(full)]
    kept.append(b"\xff\xd9")
    return b"".join(kept)


def _segments(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(marker, start, end of its header, end) of each segment after SOI, up to EOI.

    A scan's segment runs to the next marker, over its entropy-coded data.
    """
    if not data.startswith(_SOI):
        raise _LeftAlone
    position = 2
    while True:
        if data[position : position + 1] != b"\xff" or position + 2 > len(data):
            raise _LeftAlone
        marker = data[position + 1]
        if marker == _EOI:
            return
        header_end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if not position + 4 <= header_end <= len(data):
            raise _LeftAlone
        end = header_end
        if marker == _SOS:
            following = _NEXT_MARKER.search(data, header_end)
            if following is None:
                raise _LeftAlone
            end = following.start()
        yield marker, position, header_end, end
        position = end


def _read_frame(segment: bytes) -> _Frame:
    if len(segment) < 6:  # noqa: PLR2004 - precision, height, width, count
        raise _LeftAlone
    height = int.from_bytes(segment[1:3], "big")
    width = int.from_bytes(segment[3:5], "big")
    count = segment[5]
    if width == 0 or height == 0 or count == 0 or len(segment) < 6 + 3 * count:
        raise _LeftAlone
    components = tuple(
        _Component(segment[6 + 3 * i], segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 0x0F)
        for i in range(count)
    )
    if any(not 1 <= c.h <= 4 or not 1 <= c.v <= 4 for c in components):  # noqa: PLR2004
        raise _LeftAlone
    return _Frame(width, height, components)


def _read_scan(segment: bytes, known: dict[int, list[int]]) -> tuple[set[int], int]:
    """The scan's components and first coefficient; records which bits it brings.

    A scan libjpeg would refuse or warn about (its checks in jdphuff.c) is
    left alone: an unknown component, a band out of range, an interleaved AC
    scan, an AC scan before its component's DC, a band not first sent or not
    refined one bit at a time in order.
    """
    if not segment or len(segment) < 4 + 2 * segment[0]:
        raise _LeftAlone
    count = segment[0]
    components = {segment[1 + 2 * i] for i in range(count)}
    first, last, approximation = segment[1 + 2 * count : 4 + 2 * count]
    high, low = approximation >> 4, approximation & 0x0F
    if not (
        components <= known.keys()
        and len(components) == count
        and first <= last < _COEFFICIENTS
        and (last == 0 or (first > 0 and count == 1))
        and (high == 0 or low == high - 1)
        and low <= _LOWEST_BIT
    ):
        raise _LeftAlone
    for ident in components:
        bits = known[ident]
        if first > 0 and bits[0] < 0:
            raise _LeftAlone
        for k in range(first, last + 1):
            if bits[k] != (high or -1):
                raise _LeftAlone
            bits[k] = low
    return components, first


def _zero_scan(ident: int, blocks: int) -> bytes:
    """An AC scan of component ``ident`` saying all its ``blocks`` have no AC coefficient."""
    accumulator = 0
    width = 0
    coded = bytearray()
    while blocks > 0:
        run = min(blocks, _LONGEST_RUN)
        size = run.bit_length() - 1  # EOBn covers 2**n to 2**(n+1) - 1 blocks
        accumulator = (accumulator << (4 + size)) | (size << size) | (run - (1 << size))
        width += 4 + size
        blocks -= run
        while width >= 8:  # noqa: PLR2004 - whole bytes out
            width -= 8
            coded.append((accumulator >> width) & 0xFF)
            accumulator &= (1 << width) - 1
    if width:
        coded.append(((accumulator << (8 - width)) | ((1 << (8 - width)) - 1)) & 0xFF)
    stuffed = bytes(coded).replace(b"\xff", b"\xff\x00")
    header = bytes([0xFF, _SOS, 0, 8, 1, ident, _ZERO_TABLE, 1, 63, 0])
    return header + stuffed
