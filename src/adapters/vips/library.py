"""Processing as a library: a catalogue product on bytes or a file, in this process or a pool.

The same path as the service and ``imagecore process``: `find_product`, the
product's validation (defaults filled in, `InvalidParameter` on a wrong
value), its limits, then `VipsImageProcessor`. Every function raises only
`imagecore.errors`.

``process_bytes`` and ``process_file`` run libvips in the calling thread.
``ImagePool`` runs it in child processes (`ProcessPoolRunner`): a crash in a
decoder ends one call, not the host. Its children are started with the spawn
method, which imports the host's ``__main__`` again in each: a script that
uses it needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs

from adapters.vips.pool import ProcessPoolRunner
from adapters.vips.processor import VipsImageProcessor
from imagecore.errors import FileTooLarge
from imagecore.model import ImageInfo
from imagecore.ports import ProcessingRequest, ProcessingResult
from imagecore.products import find_product

__all__ = ["ImagePool", "Result", "process_bytes", "process_file"]

Params = Mapping[str, Any] | None


@attrs.frozen
class Result:
    """A processed image in memory: its bytes and what the processor learned.

    ``metadata`` is the product's report (the quality used, what was removed,
    the input's format and size, ...); for ``images/metadata`` ``data`` is its
    JSON document and ``width`` and ``height`` are None.
    """

    data: bytes = attrs.field(repr=lambda data: f"<{len(data)} bytes>")
    format: str
    mime_type: str
    width: int | None
    height: int | None
    metadata: dict[str, Any]
    #: The usual file name extension of ``format``, without the dot.
    extension: str
    #: What the input's header said.
    input: ImageInfo

    @classmethod
    def of(cls, data: bytes, result: ProcessingResult) -> Result:
        """Pair an output's bytes with the processor's answer about them."""
        return cls(
            data,
            result.format,
            result.mime_type,
            result.width,
            result.height,
            result.metadata,
            result.extension,
            result.input,
        )


def request_for(source: Path, destination: Path, product: str, params: Params) -> ProcessingRequest:
    """Validate ``params`` for ``product`` (key or id) and describe the work with its limits.

    Raises `UnknownProduct`, `InvalidParameter` or `FileTooLarge`.
    """
    found = find_product(product)
    checked = found.validate(params)
    size = source.stat().st_size
    if size > found.limits.max_file_bytes:
        raise FileTooLarge(
            f"{source.name} has {size} bytes; {found.key} takes {found.limits.max_file_bytes}"
        )
    return ProcessingRequest(
        product_key=found.key,
        params=checked,
        source=source,
        destination=destination,
        max_pixels=found.limits.max_pixels,
        max_frames=found.limits.max_frames,
    )


def process_file(
    source: str | Path, destination: str | Path, product: str, params: Params = None
) -> ProcessingResult:
    """Run ``product`` on the image at ``source`` and write the result to ``destination``.

    Raises `UnknownProduct`, `InvalidParameter`, `FileTooLarge`,
    `UnsupportedMediaType`, `ImageTooLarge`, `CorruptImage` or `ProcessingError`.
    """
    request = request_for(Path(source), Path(destination), product, params)
    return VipsImageProcessor().process(request)


def process_bytes(data: bytes, product: str, params: Params = None) -> Result:
    """Run ``product`` on an image's bytes and return the result's bytes; raises as `process_file`.

    >>> process_bytes(jpeg, "images/resize", {"width": 100}).width  # doctest: +SKIP
    100
    """
    with tempfile.TemporaryDirectory(prefix="imagecore-") as folder:
        source, destination = Path(folder, "input"), Path(folder, "output")
        source.write_bytes(data)
        result = process_file(source, destination, product, params)
        return Result.of(destination.read_bytes(), result)


class ImagePool:
    """The same calls, async, each in one of ``workers`` child processes (cores by default).

    Use it as ``async with ImagePool() as pool:``; a call that runs past
    ``timeout_seconds`` is stopped with `ProcessingTimeout`, and a child that
    crashes fails its call with `ProcessorCrashed` and is replaced.
    """

    def __init__(self, workers: int = 0, timeout_seconds: float = 120.0) -> None:
        self._runner = ProcessPoolRunner(workers, timeout_seconds)

    async def process_file(
        self, source: str | Path, destination: str | Path, product: str, params: Params = None
    ) -> ProcessingResult:
        """As `process_file`, in a child process."""
        request = request_for(Path(source), Path(destination), product, params)
        return await self._runner(request)

    async def process_bytes(self, data: bytes, product: str, params: Params = None) -> Result:
        """As `process_bytes`, in a child process."""
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="imagecore-"))
        try:
            source, destination = folder / "input", folder / "output"
            await asyncio.to_thread(source.write_bytes, data)
            result = await self.process_file(source, destination, product, params)
            return Result.of(await asyncio.to_thread(destination.read_bytes), result)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)

    def close(self) -> None:
        """Stop the children; calls still running fail."""
        self._runner.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)
