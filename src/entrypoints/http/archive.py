"""``GET /instructions/{id}/archive``: every output of an instruction as one zip, streamed.

`zipfile` writes to a sink that cannot seek, so each entry carries a data
descriptor and the whole archive is produced front to back: each chunk read
from storage is written into the zip and sent on at once. No file, and not
the archive, is ever whole in memory; the size is unknown up front, so the
answer is chunked. Images are stored as they are (they are compressed
already); other outputs (the metadata JSON) are deflated.
"""

from __future__ import annotations

import logging
import zipfile
from datetime import UTC, datetime

from aiohttp import web

from entrypoints.http.context import RUNTIME, identify
from entrypoints.http.views import attachment
from imagecore import services
from imagecore.errors import NotFound, ObjectNotFound
from imagecore.model import InstructionDetail, Status
from imagecore.ports import ImageStorage

__all__ = ["archive_names", "instruction_archive"]

_log = logging.getLogger(__name__)
_ZIP_EPOCH = datetime(1980, 1, 1, tzinfo=UTC)


class _Sink:
    """A write-only, unseekable file for `zipfile`: it keeps what was written until taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: `take` hands the bytes on."""

    def close(self) -> None:
        """Nothing to close: the response is the real destination."""

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def archive_names(names: list[str]) -> list[str]:
    """Entry names for the outputs: one folder level, no clashes (``a.jpg``, ``a (2).jpg``)."""
    taken: set[str] = set()
    result = []
    for raw in names:
        name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip() or "output"
        stem, dot, extension = name.rpartition(".")
        if not dot:
            stem, extension = name, ""
        candidate, n = name, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{stem} ({n}){dot}{extension}"
        taken.add(candidate.lower())
        result.append(candidate)
    return result


def _zip_info(name: str, detail: InstructionDetail, size: int, mime_type: str) -> zipfile.ZipInfo:
    moment = max(detail.finished_at or detail.updated_at, _ZIP_EPOCH).astimezone(UTC)
    info = zipfile.ZipInfo(name, date_time=moment.timetuple()[:6])
    info.file_size = size  # lets zipfile pick Zip64 for a large entry up front
    info.compress_type = (
        zipfile.ZIP_STORED if mime_type.startswith("image/") else zipfile.ZIP_DEFLATED
    )
    return info


async def _ready(
    storage: ImageStorage, details: list[InstructionDetail]
) -> list[InstructionDetail]:
    """The files whose output is still stored (checked before the first byte is sent)."""
    ready = []
    for detail in details:
        if detail.status is not Status.DONE or detail.output is None or detail.is_cleaned:
            continue
        try:
            await storage.stat(detail.output.key)
        except ObjectNotFound:
            _log.warning("output of %s is missing from storage; left out of the archive", detail.id)
            continue
        ready.append(detail)
    return ready


async def instruction_archive(request: web.Request) -> web.StreamResponse:
    """``GET /instructions/{id}/archive``: a zip of every DONE file's output."""
    who = identify(request)
    runtime = request.app[RUNTIME]
    instruction_id = request.match_info["id"]
    details = await services.list_details(
        runtime.repository, user_id=who.user_id, instruction_id=instruction_id
    )
    ready = await _ready(runtime.storage, details)
    if not ready:
        raise NotFound("nothing to download yet: no file of this instruction is DONE")
    product = ready[0].product_key.rsplit("/", 1)[-1] or "outputs"
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": attachment(f"{product}-{instruction_id}.zip"),
            "Cache-Control": "private, no-cache",
            "X-Content-Type-Options": "nosniff",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    sink = _Sink()
    names = archive_names([d.output.name for d in ready if d.output is not None])
    try:
        with zipfile.ZipFile(sink, "w") as archive:
            for name, detail in zip(names, ready, strict=True):
                output = detail.output
                if output is None:  # pragma: no cover - filtered by _ready
                    continue
                info = _zip_info(name, detail, output.size, output.mime_type)
                with archive.open(info, "w") as entry:
                    async for chunk in runtime.storage.get(output.key):
                        entry.write(chunk)
                        await response.write(sink.take())
                await response.write(sink.take())
        await response.write(sink.take())
        await response.write_eof()
    except ConnectionResetError:
        _log.debug("client left during the archive of %s", instruction_id)
    return response
