"""What a hostile upload is, what must come of it, and how to send and check it."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any

import attrs
import pyvips

from hostile.files import BLUE, GREEN, RED, WHITE, quadrant_colours

__all__ = [
    "CRASH_MARKER",
    "MAX_FILE_BYTES",
    "Case",
    "Done",
    "Expect",
    "Failed",
    "Rejected",
    "multipart",
    "output_problems",
]

#: Bytes that make the test-only crash hook kill the decoding child (see
#: ``tests/crash_hook.py``); in the decoder-killer case only.
CRASH_MARKER = b"IMAGECORE-TEST-CRASH-7f3a9c"
#: The deployment cap the corpus assumes (MAX_FILE_BYTES) for its 413 case.
MAX_FILE_BYTES = 8 * 1024 * 1024


@attrs.frozen
class Rejected:
    """Refused at upload with ``status`` and a message that contains ``says``."""

    status: int
    says: str


@attrs.frozen
class Failed:
    """Accepted, then FAILED with one of ``codes``."""

    codes: frozenset[str]


@attrs.frozen
class Done:
    """Processed; the output must pass these checks."""

    upright: bool = False
    absent: tuple[bytes, ...] = ()
    name: str | None = None
    mime_type: str | None = None


Expect = Rejected | Failed | Done


@attrs.frozen
class Case:
    """One hostile upload and the outcome it must have."""

    name: str
    kind: str
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    filename: str
    content_type: str
    expect: Expect
    product: str = "images/thumbnail"
    params: dict[str, Any] = attrs.field(factory=dict)
    in_process: bool = True
    slow: bool = False


# ----------------------------------------------------------------------------- pictures


def output_problems(expect: Done, data: bytes) -> list[str]:
    """What is wrong with the output of a file expected to be `Done`, if anything.

    Every output: none of ``expect.absent``, no GPS field, no orientation
    left to apply; with ``upright``, `picture` the right way up.
    """
    problems = [f"output holds {bad!r}" for bad in expect.absent if bad in data]
    image = pyvips.Image.new_from_buffer(data, "")
    gps = [f for f in image.get_fields() if f.startswith("exif-ifd3-")]
    if gps:
        problems.append(f"output keeps GPS fields {gps}")
    if image.get_typeof("orientation") and image.get("orientation") != 1:
        problems.append(f"output still says orientation {image.get('orientation')}")
    if expect.upright:
        seen = [_nearest(colour) for colour in quadrant_colours(image)]
        if seen != [RED, GREEN, BLUE, WHITE] or image.width < image.height:
            problems.append(f"output is not upright: {image.width}x{image.height}, {seen}")
    return problems


def _nearest(colour: tuple[int, ...]) -> tuple[int, int, int] | None:
    if len(colour) < 3:
        return None
    return min(
        (RED, GREEN, BLUE, WHITE),
        key=lambda ref: sum((a - b) ** 2 for a, b in zip(ref, colour, strict=False)),
    )


def multipart(
    parts: Iterable[tuple[str, bytes, str]], boundary: str = "hostile-boundary-91c2"
) -> tuple[bytes, str]:
    """A multipart/form-data body of (file name, bytes, content type) parts named ``file``.

    Written by hand, not with aiohttp's FormData, so that a file name can
    carry exactly what a hostile client sends (NUL, CR/LF, backslashes,
    5000 characters): it goes out as RFC 5987 ``filename*``, percent-encoded,
    beside a plain ASCII ``filename`` fallback.
    """
    out = bytearray()
    for filename, data, content_type in parts:
        fallback = (
            filename.encode("ascii", "replace")
            .decode()
            .translate({ord(c): "_" for c in '"\\\r\n\x00'})
        )
        encoded = urllib.parse.quote(filename, safe="")
        out += f"--{boundary}\r\n".encode()
        out += (
            f'Content-Disposition: form-data; name="file"; filename="{fallback}"; '
            f"filename*=UTF-8''{encoded}\r\n"
        ).encode()
        out += f"Content-Type: {content_type}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
