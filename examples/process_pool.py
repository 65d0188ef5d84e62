"""Process files concurrently in child processes: `python process_pool.py PHOTO...`."""

import asyncio
import sys
from pathlib import Path

from adapters.vips import ImagePool


async def main(photos: list[Path]) -> None:
    # Each call runs in a child process: a decoder that crashes fails one call, not the host.
    async with ImagePool(workers=2) as pool:
        results = await asyncio.gather(
            *(pool.process_bytes(p.read_bytes(), "images/resize", {"width": 320}) for p in photos)
        )
    for photo, result in zip(photos, results, strict=True):
        print(f"{photo.name}: {result.format} {result.width}x{result.height}")


# The pool's children import this script again: the guard keeps them from running it.
if __name__ == "__main__":
    asyncio.run(main([Path(name) for name in sys.argv[1:]]))
