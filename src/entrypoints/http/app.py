"""The aiohttp application: the one table of routes, the middleware, and its lifetime.

A host mounts it under any prefix (``host.add_subapp("/images", create_app(...))``):
no route, link or exemption depends on the path it is served at.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
from aiohttp import web

from entrypoints.config import Settings
from entrypoints.container import Container, Runtime
from entrypoints.http import console, events, instructions, operations
from entrypoints.http.archive import instruction_archive
from entrypoints.http.context import AUTHENTICATE, RUNTIME, Authenticate, identity_middleware
from entrypoints.http.metrics import Metrics
from entrypoints.http.middleware import METRICS, error_middleware
from entrypoints.http.ratelimit import RATE_LIMITER, RateLimiter, rate_limit_middleware
from entrypoints.http.streams import EVENT_STREAMS, UPLOADS, StreamSlots
from entrypoints.http.uploads import upload_files
from entrypoints.service import worker_for
from imagecore.worker import Worker

__all__ = ["WORKER", "Routes", "create_app"]

WORKER = web.AppKey("worker", Worker)


@attrs.frozen
class Routes:
    """Which optional parts the application serves; the API's routes are always served.

    A host that has its own console, metrics or API documentation leaves ours out.
    """

    #: The web console at ``/`` and ``/console/...``.
    console: bool = True
    #: ``GET /metrics``: public, or behind the host's sign-in when ``authenticate`` is given.
    metrics: bool = True
    #: ``GET /swagger``, the OpenAPI document.
    swagger: bool = True
    #: ``/auth/dev-token``; it still answers only with ``DEV_LOGIN=true``, on loopback.
    dev_login: bool = True


def _routes(app: web.Application, serve: Routes) -> None:
    """Every route of the API, the console's included: the one place they are listed.

    The public ones are named as `context.PUBLIC_ROUTES` lists them.
    """
    r = app.router
    # The old service's routes (../shared/spec/seed-openapi.json).
    r.add_post("/instructions", instructions.create_instruction)
    r.add_get("/instructions", instructions.list_instructions)
    r.add_get("/instructions/{id}", instructions.get_instruction)
    r.add_post("/instructions/{id}/details", upload_files)
    r.add_get("/instructions/{id}/details", instructions.list_details)
    r.add_get("/instructions/{id}/details/{detail_id}", instructions.get_detail)
    r.add_get("/instructions/{id}/details/{detail_id}/file", instructions.download)
    r.add_get("/products", operations.list_products)
    r.add_get("/health", operations.health, name="health")
    if serve.swagger:
        r.add_get("/swagger", operations.swagger)
    # Beyond the seed: live events, the zip of outputs, administration, the web console.
    r.add_get("/instructions/{id}/events", events.instruction_events)
    r.add_get("/events", events.user_events)
    r.add_get("/instructions/{id}/archive", instruction_archive)
    r.add_delete("/instructions/{id}/details", instructions.delete_files)
    r.add_get("/files", operations.list_files)
    if serve.metrics:
        r.add_get("/metrics", operations.metrics, name="metrics")
    if serve.console:
        r.add_get("/", console.console, name="console")
        r.add_get("/console/{name}", console.console_asset, name="console_asset")
    if serve.dev_login:
        r.add_get("/auth/dev-token", console.dev_login_status)
        r.add_post("/auth/dev-token", console.dev_token)
    events.end_streams_on_shutdown(app)


def create_app(
    settings: Settings,
    *,
    run_worker: bool,
    container: Container | None = None,
    authenticate: Authenticate | None = None,
    serve: Routes = Routes(),
) -> web.Application:
    """The application; adapters open when it starts and close when it stops.

    ``container`` overrides adapters (`entrypoints.container`); ``authenticate``
    replaces the tokens and gateway headers with a host's own sign-in, which
    sees the whole request (raise `AuthError` to refuse it with a 401);
    ``serve`` leaves optional routes out.
    """
    app = web.Application(
        middlewares=[error_middleware, identity_middleware, rate_limit_middleware],
        client_max_size=1024 * 1024,
    )
    if authenticate is not None:
        app[AUTHENTICATE] = authenticate
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
    _routes(app, serve)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        runtime = await Runtime.open(settings, container)
        app[RUNTIME] = runtime
        worker = None
        if run_worker:
            worker = _worker(runtime, app[METRICS])
            await worker.start(sole_worker=settings.sole_worker)
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
