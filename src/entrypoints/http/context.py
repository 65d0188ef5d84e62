"""What every handler reaches through the application: the runtime and the caller."""

from __future__ import annotations

from aiohttp import web

from entrypoints.container import Runtime
from entrypoints.http.auth import AuthError, Identity

__all__ = ["RUNTIME", "identify"]

RUNTIME = web.AppKey("runtime", Runtime)
_IDENTITY = web.RequestKey("identity", object)


def identify(request: web.Request) -> Identity:
    """The caller, or `AuthError` (401); worked out once per request."""
    known = request.get(_IDENTITY)
    if known is None:
        try:
            known = request.app[RUNTIME].authenticator.identify(
                request.headers.get("Authorization"),
                request.headers.get("X-User-ID"),
                request.remote,
            )
        except AuthError as exc:
            known = exc
        request[_IDENTITY] = known
    if isinstance(known, AuthError):
        raise known
    if not isinstance(known, Identity):
        raise TypeError(known)
    return known
