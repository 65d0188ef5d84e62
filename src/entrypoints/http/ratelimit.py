"""Rate limits: a token bucket per user, and per client address for anonymous calls.

A signed-in user gets a larger bucket than an address. A refused request is
a 429 with ``Retry-After``; every limited answer carries the ``RateLimit-*``
headers. Buckets live in this process (N API processes allow N times the
rate in total) and the least recently seen are forgotten past a bound, so
memory stays bounded under a flood of addresses.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import attrs
from aiohttp import web

from entrypoints.http.auth import AuthError
from entrypoints.http.context import PUBLIC_ROUTES, client_address, identify
from entrypoints.http.middleware import json_error

__all__ = ["RATE_LIMITER", "RateLimiter", "rate_limit_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


@attrs.frozen
class Verdict:
    """The limiter's answer for one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


class RateLimiter:
    """Token buckets refilled at ``per_minute / 60`` per second, up to ``per_minute``.

    A rate of 0 means no limit for that kind of caller.
    """

    def __init__(
        self,
        user_per_minute: int,
        address_per_minute: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = {"user": user_per_minute, "address": address_per_minute}
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def check(self, kind: str, key: str) -> Verdict:
        """Take one token from the bucket of ``(kind, key)`` if it has one."""
        capacity = self._rates[kind]
        if capacity <= 0:
            return Verdict(allowed=True, limit=0, remaining=0, reset_seconds=0)
        now = self._clock()
        bucket = self._buckets.pop((kind, key), None) or _Bucket(float(capacity), now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * capacity / 60)
        bucket.stamp = now
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
        self._buckets[(kind, key)] = bucket
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        missing = max(0.0, 1 - bucket.tokens)
        reset = math.ceil(missing * 60 / capacity) if missing else 0
        return Verdict(allowed, capacity, int(bucket.tokens), reset)


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse with 429 past the caller's rate; label every answer with its budget."""
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None or request.match_info.route.name in PUBLIC_ROUTES:
        return await handler(request)
    try:
        kind, key = "user", identify(request).user_id
    except AuthError:
        if (address := client_address(request)) is None:
            return await handler(request)  # a trusted gateway's: it limits its own clients
        kind, key = "address", address
    verdict = limiter.check(kind, key)
    if not verdict.limit:
        return await handler(request)
    headers = {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(verdict.remaining),
        "RateLimit-Reset": str(verdict.reset_seconds),
    }
    if not verdict.allowed:
        retry = str(max(1, verdict.reset_seconds))
        return json_error(
            request,
            429,
            "rate_limited",
            f"too many requests; try again in {retry} s",
            {**headers, "Retry-After": retry},
        )
    response = await handler(request)
    if not response.prepared:
        response.headers.update(headers)
    return response
