"""`FakeImageProcessor`: a `RunProcessor` (and `ImageProcessor`) without libvips.

It copies the source to the destination and answers as a processor would, so
the worker, the services and a host's own code run end to end in
milliseconds. Its answers are plausible, not true: the output has the
source's bytes and format (sniffed from them), and the dimensions a resize
would give (the ``width`` and ``height`` parameters, the missing one in
proportion to `FakeImageProcessor.input_size`, or that size itself).
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import attrs

from imagecore.errors import UnsupportedMediaType
from imagecore.formats import EXTENSIONS, MIME_TYPES, SNIFF_BYTES, sniff
from imagecore.model import ImageInfo
from imagecore.ports import ProcessingRequest, ProcessingResult

__all__ = ["FakeImageProcessor"]


@attrs.define
class FakeImageProcessor:
    """Copies the file and answers with made-up facts; raises what it is told to.

    ``errors`` are raised one per call, in order, before anything is written
    (`CorruptImage`, `ProcessorCrashed`, ...); while ``gate`` is set to an
    unset event, calls wait for it. ``requests`` lists every request received,
    including those that raised.
    """

    #: The width and height every input is said to have.
    input_size: tuple[int, int] = (64, 48)
    #: The product's report the result carries.
    metadata: dict[str, Any] = attrs.field(factory=dict)
    errors: list[BaseException] = attrs.field(factory=list)
    gate: asyncio.Event | None = None
    requests: list[ProcessingRequest] = attrs.field(factory=list)

    @property
    def calls(self) -> int:
        """How many requests were received."""
        return len(self.requests)

    async def __call__(self, request: ProcessingRequest) -> ProcessingResult:
        """Process ``request`` as the worker's `RunProcessor` would."""
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        return self._process(request)

    def process(self, request: ProcessingRequest) -> ProcessingResult:
        """Process ``request`` as an `ImageProcessor` would (synchronously)."""
        self.requests.append(request)
        return self._process(request)

    def _process(self, request: ProcessingRequest) -> ProcessingResult:
        if self.errors:
            raise self.errors.pop(0)
        with request.source.open("rb") as source:
            fmt = sniff(source.read(SNIFF_BYTES))
        if fmt is None:
            raise UnsupportedMediaType(f"{request.source.name} is not an image format we decode")
        shutil.copyfile(request.source, request.destination)
        width, height = self._output_size(request)
        info = ImageInfo(fmt, MIME_TYPES[fmt], *self.input_size)
        return ProcessingResult(
            format=fmt,
            mime_type=MIME_TYPES[fmt],
            extension=EXTENSIONS[fmt],
            size=request.destination.stat().st_size,
            width=width,
            height=height,
            input=info,
            metadata=dict(self.metadata),
        )

    def _output_size(self, request: ProcessingRequest) -> tuple[int, int]:
        in_width, in_height = self.input_size
        width, height = request.params.get("width"), request.params.get("height")
        if isinstance(width, int) and isinstance(height, int):
            return width, height
        if isinstance(width, int):
            return width, max(1, round(in_height * width / in_width))
        if isinstance(height, int):
            return max(1, round(in_width * height / in_height)), height
        return in_width, in_height
