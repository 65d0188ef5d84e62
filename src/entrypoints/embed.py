"""The job service inside a host's own aiohttp application: the names an embedder needs.

Mount it under any prefix, with the host's own sign-in::

    host.add_subapp("/images", create_app(settings, run_worker=True, authenticate=sign_in))

``sign_in(request)`` returns an `Identity` or raises `AuthError` (a 401);
`Routes` leaves out the console, ``/metrics``, ``/swagger`` or the
development sign-in. `Runtime.open` runs the use cases on the adapters the
settings select, or on a `Container` whose providers the host overrode.
One process per DATA_DIR (see `entrypoints.owner`).
"""

from __future__ import annotations

from entrypoints.config import Settings
from entrypoints.container import Container, Runtime
from entrypoints.http.app import Routes, create_app
from entrypoints.http.auth import AuthError, Identity
from entrypoints.http.context import Authenticate

__all__ = [
    "AuthError",
    "Authenticate",
    "Container",
    "Identity",
    "Routes",
    "Runtime",
    "Settings",
    "create_app",
]
