"""The untrusted-input perimeter of the libvips adapter.

Everything that stands between a hostile upload and a decoder lives here:

* `configure_vips` blocks every libvips loader, then unblocks only those of
  `imagecore.products.INPUT_FORMATS` (SVG, PDF, matrix, CSV, raw, vips, Ultra
  HDR... stay blocked) and turns the operation cache off. These settings are
  process-wide, so only processes imagecore owns make them: the process
  pool's children and the ``imagecore`` command. A host that runs the
  processor in its own process keeps its libvips as it was, unless it calls
  `configure_vips` itself (the sniffing below still runs). It also takes
  libvips' log messages away from Python (see `configure_vips`).
  `self_test` proves the block list took effect.
* `sniff_format` reads the magic bytes with `imagecore.formats.sniff`, the
  upload's own sniffer: libvips is only ever handed a file whose first bytes
  already say it is one of our formats.
* `scan_gif` walks a GIF's blocks without decoding: libvips reports a
  65535-pixel-wide frame placed 65280 rows below a 32x32 screen as merely
  truncated, but the canvas it declares is 4 gigapixels, a decompression
  bomb to refuse as too large.
* `vips_errors` is the one place where ``pyvips.Error`` becomes an
  `imagecore.errors` exception, with a reason a user may read: libvips'
  own lines, minus the server's file paths and the noise that follows a
  failed load (probing seeks, a saver left without pixels).
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pyvips

from adapters.vips.ssim import one_blas_thread
from imagecore.errors import (
    CorruptImage,
    ImageCoreError,
    ImageTooLarge,
    ProcessingError,
    StorageFull,
    UnsupportedMediaType,
)
from imagecore.formats import NAMES, SNIFF_BYTES, sniff
from imagecore.products import INPUT_FORMATS

__all__ = ["configure_vips", "scan_gif", "self_test", "sniff_bytes", "sniff_format", "vips_errors"]

#: libvips loader classes per input format; blocking a class blocks its
#: _file/_buffer/_source subclasses with it.
LOADER_CLASSES: dict[str, str] = {
    "jpeg": "VipsForeignLoadJpeg",
    "png": "VipsForeignLoadPng",
    "webp": "VipsForeignLoadWebp",
    "gif": "VipsForeignLoadNsgif",
    "tiff": "VipsForeignLoadTiff",
    "avif": "VipsForeignLoadHeif",
    "heif": "VipsForeignLoadHeif",
}

_lock = threading.Lock()
_configured = False


def configure_vips() -> None:
    """Block untrusted loaders and the operation cache; idempotent, once per process.

    Process-wide and not undone: imagecore calls it only in processes it owns
    (the pool's children, the ``imagecore`` command). A host running
    `VipsImageProcessor` in its own process may call it to get the same
    hardening; its own libvips code then finds SVG, PDF and the other
    loaders blocked and the cache off, and numpy's BLAS on one thread
    (`adapters.vips.ssim.one_blas_thread`).

    libvips' own log messages (warnings about a damaged file, mostly) go to
    GLib's default handler, on stderr, instead of pyvips' handler into
    Python logging. That handler runs Python on whichever thread logs,
    libvips' worker threads included, and any Python code can start a
    garbage collection there, running finalizers on a libvips thread in the
    middle of an operation. The unit suite has died of it (SIGABRT in a
    collection inside that handler, during the fuzz test); a pool child
    would die the same way on an innocent file.
    """
    global _configured  # noqa: PLW0603 - per-process state is what a worker process needs
    if _configured:
        return
    with _lock:
        if _configured:
            return
        pyvips._remove_log_handler()  # noqa: SLF001 - pyvips has no public way to do it
        pyvips.cache_set_max(0)
        pyvips.operation_block_set("VipsForeignLoad", True)  # noqa: FBT003 - pyvips' signature
        for loader in sorted(set(LOADER_CLASSES.values())):
            pyvips.operation_block_set(loader, False)  # noqa: FBT003 - pyvips' signature
        one_blas_thread()
        _configured = True


def self_test() -> None:
    """Check that an SVG is refused and a JPEG decodes; raise RuntimeError if not.

    Run at worker start: a libvips build where the block list silently failed
    must not be allowed to take jobs.
    """
    configure_vips()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'
    with tempfile.TemporaryDirectory(prefix="imagecore-selftest-") as folder:
        probe = Path(folder) / "probe.svg"
        probe.write_bytes(svg)
        if _decodes(lambda: pyvips.Image.new_from_file(str(probe))) or _decodes(
            lambda: pyvips.Image.svgload_buffer(svg)
        ):
            raise RuntimeError("libvips decoded an SVG: the loader block list is not in force")
        jpeg = Path(folder) / "probe.jpg"
        pyvips.Image.black(8, 8).jpegsave(str(jpeg))
        if not _decodes(lambda: pyvips.Image.jpegload(str(jpeg), fail_on="error")):
            raise RuntimeError("libvips cannot decode a JPEG: the loader allow-list is broken")
    _clear_errors()


def _decodes(load: Callable[[], pyvips.Image]) -> bool:
    try:
        load().avg()
    except pyvips.Error:
        return False
    return True


def sniff_bytes(head: bytes) -> str:
    """Name the format of these leading bytes, or raise `UnsupportedMediaType`."""
    fmt = sniff(head)
    if fmt is None:
        accepted = ", ".join(NAMES[f] for f in INPUT_FORMATS)
        raise UnsupportedMediaType(f"{_describe(head)}; accepted: {accepted}")
    return fmt


def sniff_format(path: Path) -> str:
    """Name the format of the file at ``path`` from its magic bytes."""
    try:
        with path.open("rb") as stream:
            head = stream.read(SNIFF_BYTES)
    except OSError as exc:
        raise ProcessingError(f"cannot read the input file: {exc.strerror}") from exc
    return sniff_bytes(head)


def _describe(head: bytes) -> str:
    start = head.lstrip()[:16].lower()
    known = (
        (not head, "the file is empty"),
        (start.startswith((b"<svg", b"<?xml")), "SVG/XML documents are not decoded"),
        (head.startswith(b"%PDF"), "PDF documents are not decoded"),
        (head.startswith(b"BM"), "BMP images are not accepted"),
        (head.startswith(b"PK\x03\x04"), "ZIP archives are not images"),
        (head[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"), "PNM/PPM images are not accepted"),
        (head[4:8] == b"ftyp", "this ISO media file is not AVIF or HEIF"),
    )
    for matched, message in known:
        if matched:
            return message
    return "the file is not in an image format we decode"


def scan_gif(stream: BinaryIO, max_pixels: int, max_frames: int) -> int:
    """Walk a GIF's blocks without decoding; return its frame count.

    The canvas is the logical screen grown to hold every frame at its offset
    (what browsers allocate). Raises `ImageTooLarge` as soon as that canvas
    passes ``max_pixels`` or there are more than ``max_frames`` frames, and
    `CorruptImage` if the block structure is broken before the first frame.
    """
    header = stream.read(13)
    if len(header) < 13:  # noqa: PLR2004 - the GIF header and screen descriptor
        raise CorruptImage("the GIF header is truncated")
    width, height = _u16(header, 6), _u16(header, 8)
    _check_pixels(width, height, max_pixels)
    if header[10] & 0x80:
        stream.seek(3 << ((header[10] & 0x07) + 1), 1)
    frames = 0
    while True:
        introducer = stream.read(1)
        if introducer in (b"", b";"):
            # A missing trailer is common and harmless; no frame at all is not.
            return frames or _no_frame()
        if introducer == b"!":
            stream.read(1)
            _skip_sub_blocks(stream)
        elif introducer == b",":
            descriptor = stream.read(9)
            if len(descriptor) < 9:  # noqa: PLR2004 - an image descriptor's size
                return frames or _no_frame()
            width = max(width, _u16(descriptor, 0) + _u16(descriptor, 4))
            height = max(height, _u16(descriptor, 2) + _u16(descriptor, 6))
            _check_pixels(width, height, max_pixels)
            frames += 1
            if frames > max_frames:
                raise ImageTooLarge(f"the GIF has more than {max_frames} frames")
            if descriptor[8] & 0x80:
                stream.seek(3 << ((descriptor[8] & 0x07) + 1), 1)
            stream.read(1)  # LZW minimum code size
            _skip_sub_blocks(stream)
        else:
            raise CorruptImage("the GIF block structure is broken")


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 2], "little")


def _skip_sub_blocks(stream: BinaryIO) -> None:
    while (length := stream.read(1)) not in (b"", b"\x00"):
        stream.seek(length[0], 1)


def _no_frame() -> int:
    raise CorruptImage("the GIF ends before its first frame")


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image declares {width}x{height} pixels, more than the limit of {max_pixels}"
        )


def _clear_errors() -> None:
    # libvips keeps a process-wide error log; a message left by an earlier,
    # recovered failure (libtiff probing a HEIF, say) would otherwise be
    # glued to the next, unrelated error.
    pyvips.vips_lib.vips_error_clear()


#: A file path as libvips prefixes its messages with it ("/srv/scratch/abc.in: ...").
_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s:]*[\\/][^\s:]*")
#: Lines that follow from an earlier one: the HEIF reader's probing seeks past
#: the end of a short file, and a saver left without pixels when the load failed.
_NOISE = re.compile(r"bad seek|unable to write to target")
_LOADER = re.compile(r"unable to call (\w+?)load")


def _reason(message: str, detail: str) -> str:
    """Libvips' error log as a reason a user may read: no server paths, no seek noise."""
    lines: list[str] = []
    for raw in detail.splitlines():
        line = _PATH.sub("the file", " ".join(raw.split()))
        if line and not _NOISE.search(line) and line not in lines:
            lines.append(line)
    if lines:
        return "; ".join(lines)[:300]
    loader = _LOADER.search(message)
    # libvips' loaders are named after our formats (jpegload, heifload...).
    name = NAMES.get(loader.group(1), loader.group(1)) if loader else "image"
    return f"the {name} decoder refused the file without saying why"


_UNSUPPORTED = (
    "operation is blocked",
    "not a known file format",
    "is not in a known format",
    "has not been built in",
    "no suitable decoder",
)
_CORRUPT = (
    "load",
    "read",
    "decode",
    "truncat",
    "premature",
    "end of",
    "corrupt",
    "invalid",
    "bad ",
    "out of range",
    "not a",
    "thumbnail",
    "jpeg",
    "png",
    "gif",
    "tiff",
    "webp",
    "heif",
    "libspng",
)


@contextmanager
def vips_errors() -> Iterator[None]:
    """Translate any ``pyvips.Error`` raised inside into an `imagecore.errors` exception."""
    _clear_errors()
    try:
        yield
    except pyvips.Error as exc:
        raise _translate(exc) from exc
    except MemoryError as exc:
        raise ImageTooLarge("the image needs more memory than this worker has") from exc


def _translate(exc: pyvips.Error) -> ImageCoreError:
    message = str(getattr(exc, "message", "") or "")
    detail = " ".join(str(getattr(exc, "detail", "") or "").split())
    text = f"{message} {detail}".lower()
    reason = _reason(message, str(getattr(exc, "detail", "") or ""))
    if "has not been built in" in text or "no suitable decoder" in text:
        return UnsupportedMediaType(
            "this HEIF image is coded with a codec this server cannot decode (HEVC); "
            "AVIF-coded HEIF is supported"
        )
    if any(marker in text for marker in _UNSUPPORTED):
        return UnsupportedMediaType("the file is not in a format we decode")
    if "no space left" in text or "disk quota exceeded" in text:
        # libvips' own temporary files met a full disk: an outage, retried, not the image's fault.
        return StorageFull("no space left for the processor's temporary files", text)
    if "out of memory" in text or "cannot allocate" in text or "too large" in text:
        return ImageTooLarge(f"the image is too large to process: {reason}")
    if any(marker in text for marker in _CORRUPT):
        return CorruptImage(f"the image could not be decoded (truncated or malformed): {reason}")
    return ProcessingError(f"the image could not be processed: {reason}")
