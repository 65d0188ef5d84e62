"""Caps on open event streams, per user and per client address.

A stream holds a socket, a broker subscription and a task for as long as its
client keeps it open, so the request rate limit does not bound them: 600
requests a minute open 600 streams that stay. Past either cap a new stream
is refused (429 with ``Retry-After``). A stream counts until its handler
ends: the client closed it, its token expired, or the server stopped. Counts
live in this process, like the rate limiter's buckets.
"""

from __future__ import annotations

from collections import Counter

from aiohttp import web

__all__ = ["EVENT_STREAMS", "StreamSlots"]


class StreamSlots:
    """Open streams counted per user and per address, each under its cap (0: no cap)."""

    def __init__(self, per_user: int, per_address: int) -> None:
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
                return f"{cap} event streams are open for this {kind} already; close one first"
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
