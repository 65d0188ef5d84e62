"""Image formats by their magic bytes, never by a name or a declared type.

The one home of what a format is: its signature, its MIME type, its file
extension and the name users read. `sniff` looks at the first bytes of a
file and names one of the formats we decode, or returns None. The API uses
it to answer 415 before storing an upload; the processor uses it again
before a decoder sees the bytes, so the two cannot disagree.
"""

from __future__ import annotations

__all__ = ["EXTENSIONS", "FORMAT_OF_SUFFIX", "MIME_TYPES", "NAMES", "SNIFF_BYTES", "sniff"]

#: How many leading bytes `sniff` needs.
SNIFF_BYTES = 64

MIME_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "avif": "image/avif",
    "heif": "image/heif",
    "json": "application/json",
}

EXTENSIONS: dict[str, str] = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "webp": "webp",
    "tiff": "tiff",
    "avif": "avif",
    "heif": "heic",
    "json": "json",
}

#: The format a file name's extension (lower case, without the dot) names.
FORMAT_OF_SUFFIX: dict[str, str] = {
    **{extension: name for name, extension in EXTENSIONS.items()},
    "jpeg": "jpeg",
    "tif": "tiff",
    "heif": "heif",
}

#: How a format is spelled to users (error messages).
NAMES: dict[str, str] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "webp": "WebP",
    "tiff": "TIFF",
    "avif": "AVIF",
    "heif": "HEIF",
}

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"mif2", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def _sniff_isobmff(head: bytes) -> str | None:
    # An ISO-BMFF file starts with an 'ftyp' box: size, 'ftyp', major brand,
    # minor version, then compatible brands up to the box's end.
    if len(head) < 16 or head[4:8] != b"ftyp":  # noqa: PLR2004 - box header length
        return None
    box_end = min(int.from_bytes(head[0:4], "big"), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    return None


def sniff(head: bytes) -> str | None:
    """Name the format of a file from its first `SNIFF_BYTES` bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[0:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    return _sniff_isobmff(head)
