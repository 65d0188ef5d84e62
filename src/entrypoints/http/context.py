"""What every handler reaches through the application: the runtime and the caller."""

from __future__ import annotations

import structlog
from aiohttp import web

from entrypoints.container import Runtime
from entrypoints.http.auth import AuthError, GatewayHeaders, Identity

__all__ = ["RUNTIME", "client_address", "identify"]

RUNTIME = web.AppKey("runtime", Runtime)
_IDENTITY = web.RequestKey("identity", object)


def identify(request: web.Request) -> Identity:
    """The caller, or `AuthError` (401); worked out once per request."""
    known = request.get(_IDENTITY)
    if known is None:
        try:
            headers = request.headers
            known = request.app[RUNTIME].authenticator.identify(
                headers.get("Authorization"),
                headers.get("X-User-ID"),
                request.remote,
                GatewayHeaders(
                    authenticated=headers.get("X-Authenticated"),
                    roles=headers.get("X-User-Roles"),
                    origin=headers.get("X-User-Origin"),
                ),
            )
        except AuthError as exc:
            known = exc
        else:
            if known.origin is not None:  # the end user's origin, as the gateway saw it
                structlog.contextvars.bind_contextvars(user_origin=known.origin)
        request[_IDENTITY] = known
    if isinstance(known, AuthError):
        raise known
    if not isinstance(known, Identity):
        raise TypeError(known)
    return known


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
