"""imagecore inside your own aiohttp service, under /images, behind your own sign-in.

`python host_service.py` serves http://127.0.0.1:8080 (or $PORT): sign in at
/login?user=alice (a cookie), then the console is at /images/ and the API under /images/.
"""

import os
import secrets
from pathlib import Path

from aiohttp import web

from entrypoints.embed import AuthError, Identity, Routes, Settings, create_app

SESSIONS = web.AppKey("sessions", dict[str, str])


async def login(request: web.Request) -> web.StreamResponse:
    """The host's own sign-in (a stand-in for yours): a session cookie for ?user=."""
    user = request.query.get("user", "")
    if not user.isalnum():
        raise web.HTTPBadRequest(text="?user= a name of letters and digits")
    session = secrets.token_urlsafe(16)
    request.app[SESSIONS][session] = user
    redirect = web.HTTPFound("/images/")
    redirect.set_cookie("session", session, httponly=True, samesite="Strict")
    raise redirect


def host_app(data_dir: Path) -> web.Application:
    """The host's application, with imagecore mounted at /images."""
    host = web.Application()
    host[SESSIONS] = {}
    host.router.add_get("/login", login)

    async def sign_in(request: web.Request) -> Identity:
        # imagecore asks the host who calls, with the whole request in hand.
        user = host[SESSIONS].get(request.cookies.get("session", ""))
        if user is None:
            raise AuthError("sign in at /login first")
        return Identity(user)

    settings = Settings(data_dir=data_dir)
    images = create_app(
        settings,
        run_worker=True,  # the worker runs in this process, on the embedded stack
        authenticate=sign_in,
        serve=Routes(metrics=False, dev_login=False),  # the host has its own
    )
    host.add_subapp("/images", images)
    return host


if __name__ == "__main__":  # the pool's children import this module again
    web.run_app(host_app(Path("data")), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
