"""The catalogue, the administrators' file list, and the service's own state.

``/health`` and ``/metrics`` are what operators and orchestrators poll;
``/swagger`` describes every route.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web

from entrypoints.http.context import AUTHENTICATE, RUNTIME, identify
from entrypoints.http.inputs import int_query
from entrypoints.http.middleware import METRICS, envelope, ok
from entrypoints.http.openapi import openapi_document
from entrypoints.http.views import detail_view, product_view
from imagecore.errors import ImageCoreError
from imagecore.ports import DetailQuery, StorageUsage

__all__ = ["health", "list_files", "list_products", "metrics", "swagger"]

_STORAGE_MEASURE_EVERY = 60.0


async def list_products(request: web.Request) -> web.Response:
    """``GET /products``: public."""
    runtime = request.app[RUNTIME]
    stored = await runtime.repository.list_products()
    cap, ids = runtime.settings.max_file_bytes, runtime.settings.product_id_map
    products = [
        product_view(p, c, u, max_file_bytes=cap, product_id=ids.get(p.key)) for p, c, u in stored
    ]
    return ok({"products": products})


async def list_files(request: web.Request) -> web.Response:
    """``GET /files``: files not cleaned up yet, for admins."""
    who = identify(request)
    if not who.is_admin:
        raise web.HTTPForbidden(text="this route is for administrators (a token with admin: true)")
    limit = int_query(request, "limit", 100, 1, 1000)
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
    names = runtime.adapters
    checks = {
        "repository": (names["repository"], runtime.repository.ping()),
        "storage": (names["storage"], runtime.storage.ping()),
        "broker": (names["broker"], runtime.broker.ping()),
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
    status = "ok" if healthy else "unavailable"
    data = {"status": status, "dependencies": report}
    if healthy:
        # The old service answered {"status": "ok"}: its monitors read the top-level key.
        return web.json_response({"status": status, **envelope("ok", data)})
    return web.json_response(
        {
            "status": status,
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
    """``GET /metrics``: Prometheus text format.

    Public on our own server, for the scraper on its network; mounted behind a
    host's sign-in, for signed-in callers only (the host may not know it is served).
    """
    if AUTHENTICATE in request.app:
        identify(request)
    runtime, registry = request.app[RUNTIME], request.app[METRICS]
    try:
        registry.queue_depth.set(await asyncio.wait_for(runtime.broker.queue_depth(), 2.0))
    except (ImageCoreError, TimeoutError):
        registry.queue_depth.set(float("nan"))
    storage = runtime.storage
    now = asyncio.get_running_loop().time()
    if (
        isinstance(storage, StorageUsage)
        and now - registry.storage_measured_at > _STORAGE_MEASURE_EVERY
    ):
        # Walking a data folder is not free: measure at most once a minute.
        registry.storage_measured_at = now
        try:
            registry.storage_bytes.set(await asyncio.wait_for(storage.total_bytes(), 2.0))
        except (ImageCoreError, TimeoutError):
            registry.storage_bytes.set(float("nan"))
    return web.Response(body=registry.render(), content_type="text/plain", charset="utf-8")


async def swagger(request: web.Request) -> web.Response:
    """``GET /swagger``: the OpenAPI 3 document of the routes this app serves.

    Its server is the prefix a host mounted the app under, if any, so the
    paths stay as the app declares them.
    """
    prefix = request.path.removesuffix("/swagger")
    served = {route.canonical.removeprefix(prefix) for route in request.app.router.resources()}
    return web.json_response(openapi_document(served, prefix))
