"""What every handler reaches through the application: the runtime and the caller.

Who calls is worked out once per request, before the handler, by
`identity_middleware`: by the application's `Authenticate` hook when a host
gave one (it sees the whole request), else by the runtime's `Authenticator`
(a token or the trusted gateway's headers). Handlers read it with `identify`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from entrypoints.container import Runtime
from entrypoints.http.auth import AuthError, GatewayHeaders, Identity

__all__ = [
    "AUTHENTICATE",
    "PUBLIC_ROUTES",
    "RUNTIME",
    "Authenticate",
    "client_address",
    "identify",
    "identity_middleware",
]

#: A host's authentication: the caller of a request, or `AuthError` (a 401) to refuse it.
Authenticate = Callable[[web.Request], Awaitable[Identity]]

RUNTIME = web.AppKey("runtime", Runtime)
AUTHENTICATE: web.AppKey[Authenticate] = web.AppKey("authenticate")
_IDENTITY = web.RequestKey("identity", object)

#: The names of the routes nobody signs in for and no limit counts: probes, scrapes and
#: the console's static files. Named, not matched by path, so they hold under a prefix.
#: Behind a host's sign-in, ``/metrics`` wants it too (see `operations.metrics`).
PUBLIC_ROUTES = frozenset({"health", "metrics", "console", "console_asset"})

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _from_headers(request: web.Request) -> Identity:
    headers = request.headers
    return request.app[RUNTIME].authenticator.identify(
        headers.get("Authorization"),
        headers.get("X-User-ID"),
        request.remote,
        GatewayHeaders(
            authenticated=headers.get("X-Authenticated"),
            roles=headers.get("X-User-Roles"),
            origin=headers.get("X-User-Origin"),
        ),
    )


async def _caller(request: web.Request) -> Identity | AuthError:
    hook = request.app.get(AUTHENTICATE)
    try:
        who = await hook(request) if hook is not None else _from_headers(request)
    except AuthError as exc:
        return exc
    if not isinstance(who, Identity):
        raise TypeError(f"the authentication hook returned {type(who).__name__}, not Identity")
    return who


@web.middleware
async def identity_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Work out the caller before the handler; an `AuthError` is kept for `identify` to raise."""
    name = request.match_info.route.name
    if name in PUBLIC_ROUTES and not (name == "metrics" and AUTHENTICATE in request.app):
        return await handler(request)
    known = await _caller(request)
    request[_IDENTITY] = known
    if isinstance(known, Identity) and known.origin is not None:
        # The end user's origin, as the gateway saw it.
        with structlog.contextvars.bound_contextvars(user_origin=known.origin):
            return await handler(request)
    return await handler(request)


def identify(request: web.Request) -> Identity:
    """The caller, or `AuthError` (401) for a request without acceptable credentials."""
    known = request.get(_IDENTITY)
    if isinstance(known, Identity):
        return known
    if isinstance(known, AuthError):
        raise known
    raise AuthError("sign in: send 'Authorization: Bearer <token>'")


def client_address(request: web.Request) -> str | None:
    """The address a client's own limits count under; None for a trusted gateway's.

    Behind a gateway whose headers are trusted, every client has the gateway's
    address, so it names nobody in particular (the gateway limits its clients).
    """
    address = request.remote or "unknown"
    settings = request.app[RUNTIME].settings
    if settings.trust_gateway_headers and address in settings.trusted_proxies:
        return None
    return address
