"""Webhooks: one signed POST to an instruction's ``notify_url`` when it finishes.

The body is JSON (the instruction, its status and counts, each file's
outcome). ``Imagecore-Signature: t=<unix seconds>,v1=<hex>`` is the
HMAC-SHA256 of ``"<t>." + body`` with ``WEBHOOK_SECRET``; receivers should
check it and refuse old timestamps. ``Imagecore-Delivery`` identifies the
event (instruction id and its number of files): a receiver may see one
delivery more than once (two workers finishing the last two files at the
same moment, or a retry after a lost answer) and should de-duplicate on it.
A failed delivery is retried with exponential backoff.

Addresses on loopback, private or link-local networks are refused unless
``WEBHOOK_ALLOW_PRIVATE`` is set, so a webhook cannot probe the internal
network: at creation (`WebhookSender.check`: a URL whose name does not
resolve, or resolves to such an address, is a 400), and at each delivery,
where the connection goes to exactly the addresses just checked (the
session's own resolver checks them), so a name that changes its answer
between the check and the connection (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from imagecore.errors import ValidationError

__all__ = ["Resolver", "WebhookSender", "resolve", "signature"]

_log = logging.getLogger(__name__)
_RESOLVE_SECONDS = 5.0
_PRIVATE = (
    "notify_url points to a loopback, private or link-local address, which webhooks may not "
    "reach (WEBHOOK_ALLOW_PRIVATE allows it)"
)

#: Resolves a host name and port to the addresses a connection could reach; ``OSError`` if none.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _NotPublic(OSError):
    """The name stands for an address a webhook may not reach."""


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class _CheckedResolver(AbstractResolver):
    """The delivery session's resolver: it refuses a name unless all its addresses are public.

    aiohttp connects to the addresses this returns, so what is checked is
    what is reached.
    """

    def __init__(self, resolver: Resolver, *, allow_private: bool) -> None:
        self._resolve = resolver
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        del family  # every address the name has is checked, whatever the family asked
        addresses = [ipaddress.ip_address(a) for a in await self._resolve(host, port)]
        if not addresses:
            raise OSError(f"{host} has no address")
        if not self._allow_private and not all(a.is_global for a in addresses):
            raise _NotPublic(f"{host} resolves to a non-public address")
        return [
            ResolveResult(
                hostname=host,
                host=str(a),
                port=port,
                family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,  # noqa: PLR2004
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature of ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class WebhookSender:
    """Delivers finished-instruction webhooks in the background, with retries.

    ``resolver`` gives the addresses a URL's host name stands for: the default
    asks the system; every one of them must be public unless ``allow_private``.
    """

    def __init__(  # noqa: PLR0913 - the secret, the policy and the delivery's knobs
        self,
        secret: str,
        *,
        allow_private: bool = False,
        attempts: int = 5,
        first_delay: float = 1.0,
        timeout: float = 10.0,
        resolver: Resolver = resolve,
    ) -> None:
        self._secret = secret
        self._resolve = resolver
        self._allow_private = allow_private
        self._attempts = attempts
        self._first_delay = first_delay
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[bool]] = set()

    def send(self, url: str, delivery: str, payload: Mapping[str, Any]) -> None:
        """Queue the POST of ``payload`` (as JSON) to ``url``; ``delivery`` names the event."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        task = asyncio.create_task(self.deliver(url, body, delivery))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def check(self, url: str) -> None:
        """Refuse, at creation, a URL no delivery could reach: `ValidationError` naming it.

        Its name must resolve, and to public addresses only unless private
        ones are allowed.
        """
        host = urllib.parse.urlsplit(url).hostname or ""
        if (literal := _literal(host)) is not None:
            addresses = [literal]
        else:
            try:
                async with asyncio.timeout(_RESOLVE_SECONDS):
                    found = await self._resolve(host, 0)
                addresses = [ipaddress.ip_address(a) for a in found]
            except (OSError, TimeoutError) as exc:
                raise ValidationError(f"notify_url's host {host!r} does not resolve") from exc
        if not addresses:
            raise ValidationError(f"notify_url's host {host!r} does not resolve")
        if not self._allow_private and not all(a.is_global for a in addresses):
            raise ValidationError(_PRIVATE)

    async def deliver(self, url: str, body: bytes, delivery: str) -> bool:
        """POST until a 2xx answer or the attempts run out; True if delivered."""
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            literal = _literal(urllib.parse.urlsplit(url).hostname or "")
            if literal is not None and not (self._allow_private or literal.is_global):
                _log.warning("webhook %s refused: %s is not a public address", delivery, url)
                return False
            try:
                if await self._post(url, body, delivery):
                    return True
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, _NotPublic):
                    _log.warning("webhook %s refused: %s", delivery, exc.os_error)
                    return False
                _log.info("webhook %s attempt %d failed: %s", delivery, attempt, exc)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                _log.info("webhook %s attempt %d failed: %s", delivery, attempt, exc)
            if attempt < self._attempts:
                await asyncio.sleep(delay)
                delay *= 2
        _log.warning("webhook %s not delivered after %d attempts", delivery, self._attempts)
        return False

    async def _post(self, url: str, body: bytes, delivery: str) -> bool:
        if self._session is None:
            resolver = _CheckedResolver(self._resolve, allow_private=self._allow_private)
            # No cache: each attempt checks what the name stands for now.
            connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "imagecore-webhook/1",
            "Imagecore-Delivery": delivery,
            "Imagecore-Signature": f"t={now},v1={signature(self._secret, now, body)}",
        }
        async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as r:
            return 200 <= r.status < 300  # noqa: PLR2004 - the success range

    async def close(self) -> None:
        """Stop pending deliveries and close the client."""
        for task in self._pending:
            task.cancel()
        for task in list(self._pending):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
