"""The aiohttp application: every route of the API, and its lifetime.

Handlers are thin: parse the request, identify the caller, call one use case
of `imagecore.services`, shape the answer. Uploads stream part by part into
storage and downloads stream out of it; neither is ever whole in memory.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import shutil
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from entrypoints.archive import add_archive_routes
from entrypoints.config import Settings
from entrypoints.console import add_console_routes
from entrypoints.container import Container, Runtime
from entrypoints.context import RUNTIME, identify
from entrypoints.events import add_event_routes
from entrypoints.inputs import in_utc, json_object, time_value, whole_number
from entrypoints.metrics import Metrics
from entrypoints.middleware import METRICS, error_middleware, ok
from entrypoints.openapi import openapi_document
from entrypoints.ratelimit import RATE_LIMITER, RateLimiter, rate_limit_middleware
from entrypoints.service import worker_for
from entrypoints.streams import EVENT_STREAMS, UPLOADS, StreamSlots
from entrypoints.uploads import upload_files
from entrypoints.views import attachment, detail_view, product_view
from entrypoints.worker import Worker, utc_now
from imagecore import services
from imagecore.errors import ImageCoreError, ValidationError
from imagecore.model import Instruction, Status
from imagecore.ports import DetailQuery, InstructionQuery

__all__ = ["RUNTIME", "WORKER", "create_app"]

WORKER = web.AppKey("worker", Worker)
_MAX_PAGE_SIZE = 100
_STORAGE_MEASURE_EVERY = 60.0


async def _json_body(request: web.Request) -> dict[str, Any]:
    return json_object(await request.read())


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, "")
    return whole_number(name, raw, low, high) if raw else default


def _time_query(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name, "")
    return time_value(name, raw) if raw else None


async def create_instruction(request: web.Request) -> web.Response:
    """``POST /instructions``."""
    who = identify(request)
    body = await _json_body(request)
    product_ref = body.get("product_id") or body.get("product_key")
    if not isinstance(product_ref, str) or not product_ref:
        raise ValidationError("give product_id or product_key (see GET /products)")
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
    return ok({"instruction": view.to_dict()}, "instruction created", status=201)


async def list_instructions(request: web.Request) -> web.Response:
    """``GET /instructions``: newest first, filtered, paginated."""
    who = identify(request)
    status_raw = request.query.get("status", "").upper()
    if status_raw and status_raw not in Status.__members__:
        raise ValidationError(f"status must be one of {', '.join(Status.__members__)}")
    query = InstructionQuery(
        user_id=who.user_id,
        status=Status(status_raw) if status_raw else None,
        created_from=_time_query(request, "created_from"),
        created_to=_time_query(request, "created_to"),
        page=_int_query(request, "page", 1, 1, 1_000_000),
        size=_int_query(request, "size", 10, 1, _MAX_PAGE_SIZE),
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
    return ok({"instructions": [view.to_dict() for view in page.items], "pagination": pagination})


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
    return ok({"instruction": view.to_dict()})


async def list_details(request: web.Request) -> web.Response:
    """``GET /instructions/{id}/details``."""
    who = identify(request)
    details = await services.list_details(
        request.app[RUNTIME].repository,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
    )
    return ok({"files": [detail_view(d) for d in details]})


async def get_detail(request: web.Request) -> web.Response:
    """``GET /instructions/{id}/details/{detailId}``."""
    who = identify(request)
    detail = await services.get_detail(
        request.app[RUNTIME].repository,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
        detail_id=request.match_info["detail_id"],
    )
    return ok({"detail": detail_view(detail)})


async def download(request: web.Request) -> web.StreamResponse:
    """``GET .../details/{detailId}/file``: the output, or ``?variant=original``."""
    who = identify(request)
    variant = request.query.get("variant", "output")
    if variant not in {"output", "original"}:
        raise ValidationError("variant must be output or original")
    runtime = request.app[RUNTIME]
    opening = functools.partial(
        services.open_download,
        runtime.repository,
        runtime.storage,
        user_id=who.user_id,
        instruction_id=request.match_info["id"],
        detail_id=request.match_info["detail_id"],
        original=variant == "original",
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


async def list_products(request: web.Request) -> web.Response:
    """``GET /products``: public."""
    runtime = request.app[RUNTIME]
    stored = await runtime.repository.list_products()
    cap = runtime.settings.max_file_bytes
    return ok({"products": [product_view(p, c, u, max_file_bytes=cap) for p, c, u in stored]})


async def list_files(request: web.Request) -> web.Response:
    """``GET /files``: files not cleaned up yet, for admins."""
    who = identify(request)
    if not who.is_admin:
        raise web.HTTPForbidden(text="this route is for administrators (a token with admin: true)")
    limit = _int_query(request, "limit", 100, 1, 1000)
    details = await request.app[RUNTIME].repository.find_details(
        DetailQuery(is_cleaned=False, limit=limit)
    )
    return ok({"files": [{**detail_view(d), "user_id": d.user_id} for d in details]})


async def _disk_report(data_dir: Path, min_free: int) -> dict[str, Any]:
    """DATA_DIR's free space against ``min_free``: below it, writes may fail at any moment.

    The embedded stack keeps its database and files there, and every stack its
    scratch files, so a full disk stops uploads and processing alike.
    """

    def usage() -> tuple[int, int, int]:
        # A process that never wrote there yet measures the disk the folder will be on.
        return shutil.disk_usage(next(p for p in (data_dir, *data_dir.parents) if p.exists()))

    try:
        free = (await asyncio.wait_for(asyncio.to_thread(usage), 2.0))[2]
    except (OSError, TimeoutError):
        return {"status": "down", "error": "the data folder's disk cannot be read"}
    low = free < min_free
    return {
        "status": "down" if low else "ok",
        "free_bytes": free,
        "min_free_bytes": min_free,
        **({"error": "the disk is nearly full"} if low else {}),
    }


async def health(request: web.Request) -> web.Response:
    """``GET /health``: each dependency answers within 2 s, or the service is unavailable."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    checks = {
        "repository": (settings.repository_kind, runtime.repository.ping()),
        "storage": (settings.storage_kind, runtime.storage.ping()),
        "broker": (settings.broker_kind, runtime.broker.ping()),
    }
    report: dict[str, dict[str, Any]] = {}
    for name, (adapter, probe) in checks.items():
        try:
            await asyncio.wait_for(probe, 2.0)
            report[name] = {"status": "ok", "adapter": adapter}
        except (ImageCoreError, TimeoutError, OSError) as exc:
            reason = exc.message if isinstance(exc, ImageCoreError) else "no answer within 2 s"
            report[name] = {"status": "down", "adapter": adapter, "error": reason}
    report["disk"] = await _disk_report(settings.data_dir, settings.min_free_disk_bytes)
    healthy = all(r["status"] == "ok" for r in report.values())
    data = {"status": "ok" if healthy else "unavailable", "dependencies": report}
    if healthy:
        return ok(data)
    return web.json_response(
        {
            "message": "a dependency is down",
            "errors": [
                {
                    "code": "dependency_unavailable",
                    "message": ", ".join(k for k, v in report.items() if v["status"] != "ok")
                    + " down",
                }
            ],
            "data": data,
        },
        status=503,
        headers={"Retry-After": "5"},
    )


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text format."""
    runtime, registry = request.app[RUNTIME], request.app[METRICS]
    try:
        registry.queue_depth.set(await asyncio.wait_for(runtime.broker.queue_depth(), 2.0))
    except (ImageCoreError, TimeoutError):
        registry.queue_depth.set(float("nan"))
    usage = getattr(runtime.storage, "total_bytes", None)
    now = asyncio.get_running_loop().time()
    if usage is not None and now - registry.storage_measured_at > _STORAGE_MEASURE_EVERY:
        # Walking a data folder is not free: measure at most once a minute.
        registry.storage_measured_at = now
        try:
            registry.storage_bytes.set(await asyncio.wait_for(usage(), 2.0))
        except (ImageCoreError, TimeoutError):
            registry.storage_bytes.set(float("nan"))
    return web.Response(body=registry.render(), content_type="text/plain", charset="utf-8")


async def swagger(request: web.Request) -> web.Response:
    """``GET /swagger``: the OpenAPI 3 document of these routes."""
    return web.json_response(openapi_document(request.app))


def _routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/instructions", create_instruction)
    r.add_get("/instructions", list_instructions)
    r.add_get("/instructions/{id}", get_instruction)
    r.add_post("/instructions/{id}/details", upload_files)
    r.add_get("/instructions/{id}/details", list_details)
    r.add_get("/instructions/{id}/details/{detail_id}", get_detail)
    r.add_get("/instructions/{id}/details/{detail_id}/file", download)
    r.add_get("/products", list_products)
    r.add_get("/files", list_files)
    r.add_get("/health", health)
    r.add_get("/metrics", metrics)
    r.add_get("/swagger", swagger)
    add_event_routes(app)
    add_archive_routes(app)  # beyond the seed: the zip of outputs, the web console
    add_console_routes(app)


def create_app(
    settings: Settings, *, run_worker: bool, container: Container | None = None
) -> web.Application:
    """The application; adapters open when it starts and close when it stops."""
    app = web.Application(
        middlewares=[error_middleware, rate_limit_middleware], client_max_size=1024 * 1024
    )
    app[METRICS] = Metrics()
    app[RATE_LIMITER] = RateLimiter(
        settings.rate_limit_user_per_minute, settings.rate_limit_address_per_minute
    )
    app[EVENT_STREAMS] = StreamSlots(
        settings.max_event_streams_per_user, settings.max_event_streams_per_address
    )
    app[UPLOADS] = StreamSlots(
        settings.max_uploads_per_user, settings.max_uploads_per_address, "uploads"
    )
    _routes(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        runtime = await Runtime.open(settings, container)
        app[RUNTIME] = runtime
        worker = None
        if run_worker:
            worker = _worker(runtime, app[METRICS])
            await worker.start(sole_worker=settings.broker_kind == "memory")
            app[WORKER] = worker
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop(settings.shutdown_grace_seconds)
            await runtime.close()

    app.cleanup_ctx.append(lifetime)
    return app


def _worker(runtime: Runtime, registry: Metrics) -> Worker:
    def observe(product: str, status: str, seconds: float) -> None:
        registry.files.labels(product, status).inc()
        registry.processing.labels(product).observe(seconds)

    return worker_for(runtime, observe)
