"""The HTTP envelope, the one table from domain errors to status codes, and the middlewares.

Every JSON answer is ``{"message", "errors", "data"}``. An error carries a
message a person can act on, a stable code and the request id; a 500 never
shows a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from entrypoints.http.auth import AuthError, OriginRefused
from entrypoints.http.metrics import Metrics
from imagecore.errors import (
    ConflictError,
    DependencyUnavailable,
    ImageCoreError,
    InvalidTransition,
    LimitExceeded,
    NotFound,
    ProcessingError,
    ServiceBusy,
    UnknownProduct,
    UnsupportedMediaType,
    ValidationError,
)

__all__ = [
    "METRICS",
    "REQUEST_ID",
    "STATUS_FOR",
    "envelope",
    "error_middleware",
    "json_error",
    "ok",
]

_log = logging.getLogger(__name__)
#: One INFO line per request: method, path (never the query string), status,
#: duration and request id; no header is logged, so no credential is either.
_access = logging.getLogger("entrypoints.http.access")

METRICS = web.AppKey("metrics", Metrics)
REQUEST_ID = web.RequestKey("request_id", str)

#: Domain errors to HTTP statuses; the first class an error is an instance of wins.
STATUS_FOR: tuple[tuple[type[Exception], int], ...] = (
    (OriginRefused, 403),
    (AuthError, 401),
    (UnknownProduct, 404),
    (ValidationError, 400),
    (NotFound, 404),
    (LimitExceeded, 413),
    (UnsupportedMediaType, 415),
    (InvalidTransition, 409),
    (ConflictError, 409),
    (ProcessingError, 422),
    (DependencyUnavailable, 503),
    (ServiceBusy, 503),
)

#: Headers an error of a status always carries.
_EXTRA_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": 'Bearer realm="imagecore"'},
    503: {"Retry-After": "5"},
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def envelope(
    message: str,
    data: Any = None,  # noqa: ANN401 - any JSON value
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The response body every JSON route uses."""
    return {"message": message, "errors": errors, "data": data}


def ok(data: Any, message: str = "ok", status: int = 200) -> web.Response:  # noqa: ANN401 - JSON
    """A successful JSON answer."""
    return web.json_response(envelope(message, data), status=status)


def json_error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error answer in the envelope, with the request id."""
    body = envelope(
        message, None, [{"code": code, "message": message, "request_id": request.get(REQUEST_ID)}]
    )
    return web.json_response(body, status=status, headers=headers)


def _status_of(exc: Exception) -> int:
    return next((status for kind, status in STATUS_FOR if isinstance(exc, kind)), 500)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, structured logging context, metrics, and the error table."""
    request_id = request.headers.get("X-Request-ID", "")[:64] or uuid.uuid4().hex
    if not request_id.isprintable():
        request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    # What the client got: the answer's status, a passed-through redirect's, 499 for
    # a client gone (cancelled), 500 for an error re-raised mid-stream; every request
    # leaves its line and its metrics whichever way it ends.
    status = 500
    # Only the request's own keys, unbound after: a host's middleware around this
    # one (the app mounted as a sub-application) keeps the keys it bound.
    with structlog.contextvars.bound_contextvars(
        request_id=request_id, method=request.method, path=request.path
    ):
        try:
            response = await _handle(request, handler)
            status = response.status
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            _record(request, request_id, status, time.perf_counter() - started)
    response.headers.setdefault("X-Request-ID", request_id)
    return response


def _record(request: web.Request, request_id: str, status: int, seconds: float) -> None:
    """The request's access-log line and its metrics."""
    milliseconds = round(seconds * 1000, 1)
    _access.info(
        "%s %s %d in %s ms",
        request.method,
        request.path,
        status,
        milliseconds,
        extra={
            "method": request.method,
            "path": request.path,
            "status": status,
            "duration_ms": milliseconds,
            "request_id": request_id,
        },
    )
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    metrics = request.app.get(METRICS)
    if metrics is not None:
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(seconds)


def _started(request: web.Request) -> bool:
    # Once a streamed answer (a download, an archive, events) has sent its
    # headers, an error can no longer become a JSON answer: re-raised, aiohttp
    # drops the connection, so the client sees a broken transfer, not a bad file.
    return request.writer is not None and request.writer.output_size > 0


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ImageCoreError, AuthError) as exc:
        if _started(request):
            raise
        return _domain_error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400 or _started(request):  # noqa: PLR2004 - redirects and 304 pass through
            raise
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        return json_error(request, exc.status, exc.reason.lower().replace(" ", "_"), message)
    except ConnectionResetError:
        # The client left mid-request (an aborted upload, say): nobody reads an
        # answer, and a line without a traceback is all the log needs.
        _log.info("the client closed the connection before the request ended")
        if _started(request):
            raise
        return json_error(request, 400, "client_closed", "the connection closed mid-request")
    except Exception:
        if _started(request):
            raise
        _log.exception("unhandled error")  # the last line of defence: log it, answer 500
        return _internal_error(request)


def _domain_error(request: web.Request, exc: ImageCoreError | AuthError) -> web.Response:
    status = _status_of(exc)
    if status == 500:  # noqa: PLR2004 - an error of no known kind may quote a driver
        _log.error("unexpected backend error: %s", exc)
        return _internal_error(request)
    code = exc.code if isinstance(exc, ImageCoreError) else "unauthorized"
    if isinstance(exc, OriginRefused):
        code = "forbidden_origin"
    headers = _EXTRA_HEADERS.get(status)
    if isinstance(exc, ServiceBusy):
        headers = {"Retry-After": "30"}
    return json_error(request, status, code, exc.message, headers)


def _internal_error(request: web.Request) -> web.Response:
    request_id = request[REQUEST_ID]
    return json_error(
        request,
        500,
        "internal_error",
        f"something went wrong on our side; quote request id {request_id} if you report it",
    )
