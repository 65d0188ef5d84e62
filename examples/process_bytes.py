"""Process an image's bytes with two products, in this process: `python process_bytes.py PHOTO`."""

import sys
from pathlib import Path

from adapters.vips import process_bytes
from imagecore import InvalidParameter

photo = Path(sys.argv[1]).read_bytes()

thumbnail = process_bytes(photo, "images/thumbnail", {"width": 200, "format": "webp"})
print(f"thumbnail: {thumbnail.format} {thumbnail.width}x{thumbnail.height}")

rotated = process_bytes(photo, "images/rotate", {"angle": 90})
print(f"rotated: {rotated.format} {rotated.width}x{rotated.height} {rotated.mime_type}")
Path("rotated." + rotated.extension).write_bytes(rotated.data)

try:
    process_bytes(photo, "images/resize", {"width": 0})
except InvalidParameter as error:  # every error is an imagecore.ImageCoreError
    print(f"refused: {error.code}: {error.message}")
