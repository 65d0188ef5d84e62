"""The web console at ``/``, and its development sign-in.

The console is plain HTML, CSS and JavaScript in ``static/`` beside this
module (shipped in the wheel; no build step, nothing fetched from elsewhere).
Every console answer carries a strict Content-Security-Policy: scripts,
styles and connections from this origin only, no inline script, images also
from ``blob:`` (the console fetches originals and outputs with the
``Authorization`` header and shows them as blobs), no framing.

``DEV_LOGIN=true`` turns on ``POST /auth/dev-token`` ``{"user_id": ...}``,
which mints a one-hour token so a developer can sign in without a
gateway. It answers only a client on a loopback address, with a loopback
``Host`` (a DNS-rebinding page cannot use it) and no proxy header (a reverse
proxy on the same machine would make every client look local). It is off by
default and never meant for production. ``GET /auth/dev-token`` tells the
console whether to offer it.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from aiohttp import web

from entrypoints.http.auth import load_or_create_secret, mint_token
from entrypoints.http.context import RUNTIME
from entrypoints.http.inputs import json_object
from entrypoints.http.middleware import ok
from imagecore.errors import NotFound, ValidationError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DEV_TOKEN_SECONDS",
    "STATIC",
    "console",
    "console_asset",
    "dev_login_status",
    "dev_token",
]

STATIC = Path(__file__).with_name("static")
DEV_TOKEN_SECONDS = 3600

#: Same origin only; images also from blob: URLs; no inline script or style, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    # No build step means no hashed names: revalidate every time (cheap, with ETag).
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_ASSET = re.compile(r"^[a-z0-9][a-z0-9-]*\.(?:css|js|svg)$")
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")
_MAX_USER_ID = 128


def _static(name: str) -> web.FileResponse:
    path = STATIC / name
    if not path.is_file():
        raise NotFound(f"the console has no file {name!r}")
    return web.FileResponse(
        path, headers={**_SECURITY_HEADERS, "Content-Type": _TYPES[path.suffix]}
    )


async def console(request: web.Request) -> web.FileResponse:
    """``GET /``: the console's page."""
    del request
    return _static("index.html")


async def console_asset(request: web.Request) -> web.FileResponse:
    """``GET /console/{name}``: a script, style sheet or icon of the console."""
    name = request.match_info["name"]
    if not _ASSET.fullmatch(name):
        raise NotFound(f"the console has no file {name!r}")
    return _static(name)


def _is_loopback(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return value.lower() == "localhost"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def dev_login_refusal(request: web.Request) -> str | None:
    """Why this request may not use the development sign-in, or None if it may."""
    if not request.app[RUNTIME].settings.dev_login:
        return "development sign-in is off (DEV_LOGIN=true turns it on, on your own machine)"
    if request.app[RUNTIME].settings.jwt_public_key:
        return "development sign-in needs an HS256 secret; tokens come from your identity provider"
    if any(header in request.headers for header in _PROXY_HEADERS):
        return "development sign-in is not available through a proxy"
    if not _is_loopback(request.remote or "") or not _is_loopback(_host_name(request.host)):
        return "development sign-in answers only on this machine (a loopback address)"
    return None


async def dev_login_status(request: web.Request) -> web.Response:
    """``GET /auth/dev-token``: whether this client may use the development sign-in."""
    refusal = dev_login_refusal(request)
    return ok({"available": refusal is None}, refusal or "development sign-in is available")


async def dev_token(request: web.Request) -> web.Response:
    """``POST /auth/dev-token``: a short-lived token for any user id, in development only."""
    refusal = dev_login_refusal(request)
    if refusal is not None:
        if not request.app[RUNTIME].settings.dev_login:
            raise NotFound(refusal)
        raise web.HTTPForbidden(text=refusal)
    if request.content_type != "application/json":
        raise ValidationError('send JSON: {"user_id": "alice"}')
    body = json_object(await request.read(), 'send JSON with a user id: {"user_id": "alice"}')
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValidationError('give a user id: {"user_id": "alice"}')
    user_id = user_id.strip()
    if len(user_id) > _MAX_USER_ID or not user_id.isprintable():
        raise ValidationError(f"a user id is at most {_MAX_USER_ID} printable characters")
    settings = request.app[RUNTIME].settings
    token = mint_token(
        settings.jwt_secret or load_or_create_secret(settings.data_dir),
        user_id,
        ttl_seconds=DEV_TOKEN_SECONDS,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        key_id=settings.jwt_key_id,
    )
    data = {
        "token": token,
        "token_type": "Bearer",
        "expires_in": DEV_TOKEN_SECONDS,
        "user_id": user_id,
    }
    return ok(data, f"signed in as {user_id} for development", status=201)
