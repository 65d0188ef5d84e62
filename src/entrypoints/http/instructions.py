"""Instructions and their files: create, list, read, download.

Handlers are thin: parse the request, identify the caller, call one use case
of `imagecore.services`, shape the answer. Downloads stream out of storage
and are never whole in memory.
"""

from __future__ import annotations

import base64
import functools
from datetime import datetime

from aiohttp import web

from entrypoints.http.context import RUNTIME, identify
from entrypoints.http.inputs import in_utc, int_query, json_body, time_query
from entrypoints.http.middleware import ok
from entrypoints.http.views import attachment, detail_view, instruction_json, record_view
from imagecore import services
from imagecore.errors import ValidationError
from imagecore.model import Instruction, Status, utc_now
from imagecore.ports import InstructionQuery

__all__ = [
    "create_instruction",
    "delete_files",
    "download",
    "get_detail",
    "get_instruction",
    "list_details",
    "list_instructions",
]

_MAX_PAGE_SIZE = 100


async def create_instruction(request: web.Request) -> web.Response:
    """``POST /instructions``."""
    who = identify(request)
    body = await json_body(request)
    product_ref = body.get("product_id") or body.get("product_key")
    if not isinstance(product_ref, str) or not product_ref:
        raise ValidationError("give product_id or product_key (see GET /products)")
    ids = request.app[RUNTIME].settings.product_id_map
    product_ref = next((key for key, known in ids.items() if known == product_ref), product_ref)
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise ValidationError("params must be an object of name: value pairs")
    notify_url = body.get("notify_url")
    if notify_url is not None:
        if not isinstance(notify_url, str):
            raise ValidationError("notify_url must be a string (an http:// or https:// URL)")
        services.check_notify_url(notify_url)
        await request.app[RUNTIME].webhooks.check(notify_url)
    view = await services.create_instruction(
        request.app[RUNTIME].repository,
        user_id=who.user_id,
        product_ref=product_ref,
        params=params,
        now=utc_now(),
        notify_url=notify_url,
    )
    return ok({"instruction": instruction_json(view, ids)}, "instruction created")


async def list_instructions(request: web.Request) -> web.Response:
    """``GET /instructions``: newest first, filtered, paginated."""
    who = identify(request)
    status_raw = request.query.get("status", "").upper()
    if status_raw and status_raw not in Status.__members__:
        raise ValidationError(f"status must be one of {', '.join(Status.__members__)}")
    query = InstructionQuery(
        user_id=who.user_id,
        status=Status(status_raw) if status_raw else None,
        created_from=time_query(request, "created_from"),
        created_to=time_query(request, "created_to"),
        page=int_query(request, "page", 1, 1, 1_000_000),
        size=int_query(request, "size", 10, 1, _MAX_PAGE_SIZE),
        after=_cursor_query(request),
    )
    page = await services.list_instructions(request.app[RUNTIME].repository, query)
    last = page.items[-1].instruction if len(page.items) == page.size else None
    pagination = {
        "page": page.page,
        "size": page.size,
        "total": page.total,
        "next_cursor": _cursor(last) if last is not None else None,
    }
    ids = request.app[RUNTIME].settings.product_id_map
    instructions = [instruction_json(view, ids) for view in page.items]
    return ok({"instructions": instructions, "pagination": pagination})


def _cursor(instruction: Instruction) -> str:
    """Where the page after ``instruction`` starts: opaque to clients."""
    raw = f"{instruction.created_at.isoformat()}|{instruction.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _cursor_query(request: web.Request) -> tuple[datetime, str] | None:
    raw = request.query.get("cursor")
    if raw is None:
        return None
    try:
        moment, _, instruction_id = (
            base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().partition("|")
        )
        after = datetime.fromisoformat(moment)
    except ValueError:
        raise ValidationError("cursor is not one this service gave") from None
    utc = in_utc(after) if after.tzinfo is not None else None
    if utc is None or not instruction_id:
        raise ValidationError("cursor is not one this service gave")
    return utc, instruction_id


async def get_instruction(request: web.Request) -> web.Response:
    """``GET /instructions/{id}``."""
    who = identify(request)
    view = await services.get_instruction(
        request.app[RUNTIME].repository,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
    )
    return ok({"instruction": instruction_json(view, request.app[RUNTIME].settings.product_id_map)})


async def list_details(request: web.Request) -> web.Response:
    """``GET /instructions/{id}/details``."""
    who = identify(request)
    details = await services.list_details(
        request.app[RUNTIME].repository,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
    )
    # How long results are kept, so a client can say so before they go.
    retention = request.app[RUNTIME].settings.pipeline.retention_seconds
    return ok({"files": [detail_view(d) for d in details], "retention_seconds": retention})


async def delete_files(request: web.Request) -> web.Response:
    """``DELETE /instructions/{id}/details``: delete its stored files now, cancel unfinished."""
    who = identify(request)
    runtime = request.app[RUNTIME]
    details = await services.delete_files(
        runtime.repository,
        runtime.storage,
        runtime.broker,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
        now=utc_now(),
    )
    return ok({"files": [detail_view(d) for d in details]}, "the files were deleted")


async def get_detail(request: web.Request) -> web.Response:
    """``GET /instructions/{id}/details/{detailId}``: a file's input or output record."""
    who = identify(request)
    record = await services.get_record(
        request.app[RUNTIME].repository,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
        record_id=request.match_info["detail_id"],
    )
    return ok({"detail": record_view(record)})


async def download(request: web.Request) -> web.StreamResponse:
    """``GET .../details/{detailId}/file``: an input record's original, an output's output.

    ``?variant=original`` or ``?variant=output`` asks for one whichever record is named.
    """
    who = identify(request)
    variant = request.query.get("variant")
    if variant not in {None, "output", "original"}:
        raise ValidationError("variant must be output or original")
    runtime = request.app[RUNTIME]
    opening = functools.partial(
        services.open_download,
        runtime.repository,
        runtime.storage,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
        detail_id=request.match_info["detail_id"],
        original=None if variant is None else variant == "original",
    )
    cached = request.headers.get("If-None-Match")
    # A HEAD, or a GET that may be answered 304, needs only the description.
    found = await opening(body=request.method != "HEAD" and cached is None)
    etag = f'"{found.stored.etag}"'
    if cached == etag:
        return web.Response(status=304, headers={"ETag": etag})
    if request.method != "HEAD" and cached is not None:
        found = await opening()  # the client's copy is stale: now the bytes too
        etag = f'"{found.stored.etag}"'
    headers = {
        "Content-Type": found.content_type,
        "Content-Disposition": attachment(found.name),
        "ETag": etag,
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
    }
    # The first chunk before the headers: storage that fails to open the object
    # (stopped, or restarting with its metadata up before its data) is still a
    # 503 with Retry-After, not a connection dropped after the headers went out.
    first = await anext(found.chunks, b"")
    response = web.StreamResponse(headers=headers)
    response.content_length = found.stored.size
    await response.prepare(request)
    if first:
        await response.write(first)
        async for chunk in found.chunks:
            await response.write(chunk)
    await response.write_eof()
    return response
