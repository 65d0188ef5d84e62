"""Caps on open event streams and on uploads in progress, per user and per client address.

A stream holds a socket, a broker subscription and a task for as long as its
client keeps it open, so the request rate limit does not bound them: 600
requests a minute open 600 streams that stay. An upload likewise holds its
socket and up to a megabyte of body until it ends (issue 27). Past either
cap a new one is refused (429 with ``Retry-After``). Each counts until its
handler ends, however it ends. Counts live in this process, like the rate
limiter's buckets.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from entrypoints.http.auth import Identity
from entrypoints.http.context import client_address
from entrypoints.http.middleware import json_error

__all__ = ["EVENT_STREAMS", "UPLOADS", "StreamSlots", "held"]

#: Seconds a refused client is told to wait.
_RETRY_AFTER = 5


class StreamSlots:
    """Open streams (or uploads: ``what``) per user and per address, under caps (0: none)."""

    def __init__(self, per_user: int, per_address: int, what: str = "event streams") -> None:
        self._what = what
        self._caps = {"user": per_user, "address": per_address}
        self._open: dict[str, Counter[str]] = {"user": Counter(), "address": Counter()}

    def take(self, user: str, address: str | None) -> str | None:
        """Count a new stream and return None, or say which cap refuses it.

        ``address`` None is not counted: a trusted gateway's, shared by its clients.
        """
        keys = {"user": user, "address": address}
        for kind, key in keys.items():
            cap = self._caps[kind]
            if key is not None and cap and self._open[kind][key] >= cap:
                return f"{cap} {self._what} are open for this {kind} already; close one first"
        for kind, key in keys.items():
            if key is not None:
                self._open[kind][key] += 1
        return None

    def give_back(self, user: str, address: str | None) -> None:
        """Uncount a stream that `take` counted."""
        for kind, key in (("user", user), ("address", address)):
            if key is not None:
                self._open[kind][key] -= 1
                if self._open[kind][key] <= 0:
                    del self._open[kind][key]


EVENT_STREAMS = web.AppKey("event_streams", StreamSlots)
UPLOADS = web.AppKey("uploads", StreamSlots)


@contextlib.asynccontextmanager
async def held(
    request: web.Request, who: Identity, slots: web.AppKey[StreamSlots], code: str
) -> AsyncIterator[web.Response | None]:
    """A place in ``slots`` for one more of the caller's, or the 429 (``code``) refusing it."""
    address = client_address(request)
    counted = request.app[slots]
    if (refusal := counted.take(who.user_id, address)) is not None:
        yield json_error(request, 429, code, refusal, {"Retry-After": str(_RETRY_AFTER)})
        return
    try:
        yield None
    finally:
        counted.give_back(who.user_id, address)
