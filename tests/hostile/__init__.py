"""A corpus of hostile uploads, made in code at test time: no binary file is committed.

Every `Case` is one upload: its bytes, the file name and content type the
client claims, the product it is sent to, and what must come of it:

* `Rejected`: the upload itself is refused (415 not an image we decode, 413
  too big, 400 empty or malformed), with a message containing ``says``;
* `Failed`: the upload is accepted (its first bytes look like one of our
  formats) but processing ends FAILED with one of ``codes`` and a message;
* `Done`: a benign but odd file (lying name, polyglot, EXIF orientation and
  GPS, hostile file name, a flood within the limits) that must be
  processed; `output_problems` says what is wrong with its output.

The images are drawn and written with pyvips (`hostile.files`), then cut,
patched or wrapped by hand; `hostile.broken` lists the files that must be
refused or fail, `hostile.benign` those that must come out clean. ``kind``
groups the cases for the time-to-reject report. ``in_process=False`` marks
a case that may take down the process decoding it; only the integration
test, with libvips in a child process, runs those. ``slow`` marks a legal
but expensive file (seconds of CPU, a GiB of memory).
"""

from __future__ import annotations

import functools

from hostile import benign, broken
from hostile.files import picture, quadrant_colours, valid
from hostile.model import (
    CRASH_MARKER,
    MAX_FILE_BYTES,
    Case,
    Done,
    Expect,
    Failed,
    Rejected,
    multipart,
    output_problems,
)

__all__ = [
    "CRASH_MARKER",
    "MAX_FILE_BYTES",
    "Case",
    "Done",
    "Expect",
    "Failed",
    "Rejected",
    "cases",
    "multipart",
    "output_problems",
    "picture",
    "quadrant_colours",
    "valid",
]


@functools.cache
def cases() -> tuple[Case, ...]:
    """The whole corpus, built once per process."""
    built = [*broken.cases(), *benign.cases()]
    names = [case.name for case in built]
    assert len(names) == len(set(names)), "case names must be unique"
    return tuple(built)
