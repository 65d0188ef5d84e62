"""``POST /instructions/{id}/details``: files streamed part by part into storage.

No part is ever whole in memory, and no body holds the event loop: aiohttp's
multipart reader never waits on bytes already buffered, so a body of many
short lines (empty parts, or a long preamble before the first boundary)
would be parsed in one stretch while every other request waited
(docs/decisions/0011-upload-bodies-bounded.md). So an upload reads at most its
product's file limit in parts (plus a small margin), refuses the first part
not named ``file``, reads a bounded number of lines outside the files'
contents, and yields the loop at each of those lines.

No body holds memory or a socket for long either: uploads that send part of
a file and stop would hold their bytes for as long as their clients wait
(a file's bytes gather in a batch of up to 1 MiB before they are written). So
each wait for the body's bytes lasts at most ``UPLOAD_IDLE_TIMEOUT_SECONDS``,
the whole body at most ``UPLOAD_BODY_TIMEOUT_SECONDS``; past either the
upload ends with 408, the part being stored is deleted and not recorded.
A user, and a client address, have at most ``MAX_UPLOADS_PER_USER`` and
``MAX_UPLOADS_PER_ADDRESS`` uploads in progress (`entrypoints.http.streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from entrypoints.http.auth import Identity
from entrypoints.http.context import RUNTIME, identify
from entrypoints.http.heap import trim_soon
from entrypoints.http.middleware import METRICS, json_error, ok
from entrypoints.http.streams import UPLOADS, held
from entrypoints.http.views import detail_view, output_record_view
from imagecore import services
from imagecore.errors import ImageCoreError, TooManyFiles, ValidationError
from imagecore.model import InstructionDetail, utc_now
from imagecore.products import find_product

__all__ = ["upload_files"]

_log = logging.getLogger(__name__)
_CHUNK = 256 * 1024
#: Parts an upload may hold beyond its product's file limit: one file too many still gets
#: the file limit's own answer, and no body makes the parser walk further than this.
_PART_MARGIN = 5
#: Lines read outside the files' contents, per part allowed: a boundary, a few headers
#: (browsers send two), the blank line; the rest is room for a preamble.
_LINES_PER_PART = 32


async def upload_files(request: web.Request) -> web.Response:
    """``POST /instructions/{id}/details``: one or more multipart parts named ``file``.

    Files are stored one by one, in the order sent, up to the first part
    refused (over a limit, not an image, or not a part named ``file``): the
    answer lists the stored ``files`` and, in ``refused``, that part with its
    reason; the parts after it are not read (a refused part may be endless).
    A request that stores no file fails with that part's error. A body that
    stalls or takes too long ends with 408 (``upload_timeout``); the files
    stored before it stay, the one it was sending is deleted.
    """
    who = identify(request)
    async with held(request, who, UPLOADS, "too_many_uploads") as refused:
        if refused is not None:
            return refused
        settings = request.app[RUNTIME].settings
        stored: list[InstructionDetail] = []
        try:
            return await _upload(request, who, stored)
        except _Stalled as exc:
            reason = f"the body sent no byte for {exc.seconds:g} s"
        except _TooSlow:
            reason = f"the body took more than {settings.upload_body_timeout_seconds:g} s"
        kept = f"; the {len(stored)} files before it were stored" if stored else ""
        _log.info("upload to %s ended: %s%s", request.match_info["id"], reason, kept)
        trim_soon()  # the body's bytes are freed: hand their pages back
        answer = json_error(request, 408, "upload_timeout", f"{reason}: upload ended{kept}")
        # The rest of the body is not read. aiohttp still reads and drops what comes for
        # up to 10 s (its lingering_time): closing at once, with bytes unread, resets the
        # connection, and a reset may destroy the answer before the client has read it.
        answer.force_close()
        return answer


async def _upload(
    request: web.Request, who: Identity, accepted: list[InstructionDetail]
) -> web.Response:
    """`upload_files` within its slot and its time; ``accepted`` gathers the stored files."""
    runtime = request.app[RUNTIME]
    # Whose instruction it is, before a byte of the body is read.
    instruction = await services.owned_instruction(
        runtime.repository, user_id=who.user_id, instruction_id=request.match_info["id"]
    )
    if not _media_type(request).startswith("multipart/"):
        raise ValidationError("send the files as multipart/form-data parts named 'file'")
    most = find_product(instruction.product_key).limits.max_files_per_instruction + _PART_MARGIN
    refused: tuple[str, ImageCoreError] | None = None
    try:
        idle = runtime.settings.upload_idle_timeout_seconds or None
        whole = runtime.settings.upload_body_timeout_seconds or None
        deadline = None if whole is None else asyncio.get_running_loop().time() + whole
        async for number, part in _parts(request, most, idle, deadline):
            if not isinstance(part, BodyPartReader) or part.name != "file":
                refused = (f"part {number}", _not_a_file(part))
                break
            name = part.filename or "upload"
            try:
                detail = await _upload_part(request, who.user_id, name, part)
            except ImageCoreError as exc:
                refused = (name, exc)
                break
            request.app[METRICS].uploaded_bytes.inc(detail.size)
            accepted.append(detail)
    except TooManyFiles as exc:
        refused = (f"part {most + 1}", exc)
    except ValidationError as exc:  # the body broke off: what was stored stays
        refused = ("(the rest of the body)", exc)
    if refused is not None and not accepted:
        name, error = refused
        error.message = f"{name}: {error.message}"
        raise error
    if not accepted:
        raise ValidationError("no file received: send multipart/form-data parts named 'file'")
    body: dict[str, Any] = {
        # The old service's answer: the first file's input and output records.
        "input": detail_view(accepted[0]),
        "output": output_record_view(accepted[0]),
        "files": [detail_view(d) for d in accepted],
        "refused": [],
    }
    message = "files uploaded"
    if refused is not None:
        name, error = refused
        _log.info("upload to %s: %s refused (%s)", request.match_info["id"], name, error.code)
        body["refused"] = [{"name": name, "code": error.code, "message": error.message}]
        message = (
            f"{len(accepted)} files uploaded; {name} was refused and the parts after it not read"
        )
    return ok(body, message)


def _not_a_file(part: BodyPartReader | MultipartReader) -> ValidationError:
    if isinstance(part, MultipartReader):
        called = "is a nested multipart body"
    elif part.name is None:
        called = "has no name"
    else:
        called = f"is named {part.name[:64]!r}"
    return ValidationError(f"only parts named 'file' are read, and this one {called}")


async def _upload_part(
    request: web.Request, user_id: str, name: str, part: BodyPartReader
) -> InstructionDetail:
    runtime = request.app[RUNTIME]

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await part.read_chunk(_CHUNK):
            yield chunk

    return await services.upload_file(
        runtime.repository,
        runtime.storage,
        runtime.broker,
        user_id=user_id,
        instruction_id=request.match_info["id"],
        filename=name,
        chunks=chunks(),
        now=utc_now(),
        max_bytes=runtime.settings.max_file_bytes or None,
        max_queued=runtime.settings.max_queued_files or None,
    )


def _media_type(request: web.Request) -> str:
    """The request's media type, lower case, without its parameters.

    Read from the header as it is: aiohttp's ``request.content_type`` parses
    it with the email package, which costs more than the rest of this check
    (docs/decisions/0010-upload-media-type-from-header.md).
    """
    return request.headers.get(hdrs.CONTENT_TYPE, "").partition(";")[0].strip().lower()


async def _parts(
    request: web.Request, most: int, idle: float | None = None, deadline: float | None = None
) -> AsyncIterator[tuple[int, BodyPartReader | MultipartReader]]:
    """The body's parts, numbered from 1, at most ``most`` of them (`TooManyFiles` past it).

    Each wait for the body's bytes, in a part's contents too, lasts at most ``idle``
    seconds (`_Stalled` past it; None: no limit), and none goes past the loop time
    ``deadline`` (`_TooSlow`).

    A malformed multipart body is a 400, not a 500.
    """
    lines = (most + 1) * _LINES_PER_PART
    paced = _PacedBody(request.content, lines, idle, deadline)
    try:
        reader = MultipartReader(request.headers, cast("StreamReader", paced))
        number = 0
        while (part := await reader.next()) is not None:
            number += 1
            if number > most:
                raise TooManyFiles(f"an upload holds at most {most} parts")
            yield number, part
    except _TooManyLines:
        raise ValidationError(
            f"the multipart body has more than {lines} lines besides its files' contents"
        ) from None
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        raise ValidationError(f"the multipart body is malformed: {type(exc).__name__}") from None


class _TooManyLines(ValueError):
    """The body has more lines outside its files' contents than its parts allow."""


class _Stalled(Exception):
    """The body sent no byte for ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class _TooSlow(Exception):
    """The body was not all sent by its deadline."""


class _PacedBody:
    """The request body as the multipart reader reads it: lines bounded, the loop yielded to.

    Each wait for bytes lasts at most ``idle`` seconds (`_Stalled` past it; None: no limit)
    and ends by the loop time ``deadline`` (`_TooSlow` past it). Only the body's reads
    are timed: storing and recording a file are never cut off halfway, so what the
    client is told and what is stored agree.
    The reader reads the files' contents in chunks and everything else (a
    preamble, boundaries, part headers) a line at a time, so counting lines
    bounds the parsing work of a body whatever its size, and yielding at
    each line lets other requests in between. ``read`` and ``readline`` are
    the only ways it waits for bytes. Everything else is the body's own.
    """

    def __init__(
        self,
        body: StreamReader,
        lines: int,
        idle: float | None = None,
        deadline: float | None = None,
    ) -> None:
        self._body = body
        self._lines_left = lines
        self._idle = idle
        self._deadline = deadline

    async def readline(self, **options: Any) -> bytes:  # noqa: ANN401 - aiohttp's own options
        self._lines_left -= 1
        if self._lines_left < 0:
            raise _TooManyLines
        await asyncio.sleep(0)
        async with self._bytes_or_stalled():
            return await self._body.readline(**options)

    async def read(self, n: int = -1) -> bytes:
        async with self._bytes_or_stalled():
            return await self._body.read(n)

    @contextlib.asynccontextmanager
    async def _bytes_or_stalled(self) -> AsyncIterator[None]:
        left = None
        if self._deadline is not None:
            # Past it, bytes already received are still read (no wait, no timeout).
            left = max(0.0, self._deadline - asyncio.get_running_loop().time())
        wait = (
            left if self._idle is None or (left is not None and left < self._idle) else self._idle
        )
        try:
            async with asyncio.timeout(wait):
                yield
        except TimeoutError:
            if wait is not None and wait == left:
                raise _TooSlow from None
            raise _Stalled(self._idle or 0) from None

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the body's own attributes
        return getattr(self._body, name)
