"""Webhooks: one signed POST to an instruction's ``notify_url`` when it finishes.

The body is JSON (the instruction, its status and counts, each file's
outcome). ``Imagecore-Signature: t=<unix seconds>,v1=<hex>`` is the
HMAC-SHA256 of ``"<t>." + body`` with ``WEBHOOK_SECRET``; receivers should
check it and refuse old timestamps. ``Imagecore-Delivery`` identifies the
event (instruction id and its number of files): a receiver may see one
delivery more than once (two workers finishing the last two files at the
same moment, or a retry after a lost answer) and should de-duplicate on it.
A failed delivery is retried with exponential backoff. Addresses that
resolve to loopback, private or link-local networks are refused unless
``WEBHOOK_ALLOW_PRIVATE`` is set, so a webhook cannot probe the internal
network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from imagecore.model import Instruction, InstructionDetail
from imagecore.services import instruction_view

__all__ = ["Resolver", "WebhookSender", "resolve", "signature"]

_log = logging.getLogger(__name__)

#: Resolves a host name and port to the addresses a connection could reach; ``OSError`` if none.
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    return [str(info[4][0]) for info in infos]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature of ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _payload(instruction: Instruction, details: list[InstructionDetail]) -> dict[str, Any]:
    view = instruction_view(instruction, details)
    return {
        "event": "instruction.finished",
        "instruction": view.to_dict(),
        "files": [
            {
                "id": d.id,
                "original_name": d.original_name,
                "status": d.status.value,
                "output_size": d.output.size if d.output else None,
                "error_code": d.error_code,
                "error_message": d.error_message,
            }
            for d in details
        ],
    }


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

    def send(self, instruction: Instruction, details: list[InstructionDetail]) -> None:
        """Queue the delivery of the finished instruction to its ``notify_url``."""
        if not instruction.notify_url:
            return
        body = json.dumps(_payload(instruction, details), separators=(",", ":")).encode()
        delivery = f"{instruction.id}:{len(details)}"
        task = asyncio.create_task(self.deliver(instruction.notify_url, body, delivery))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def deliver(self, url: str, body: bytes, delivery: str) -> bool:
        """POST until a 2xx answer or the attempts run out; True if delivered."""
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            if not await self._allowed(url):
                _log.warning("webhook %s refused: %s is not a public address", delivery, url)
                return False
            try:
                if await self._post(url, body, delivery):
                    return True
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                _log.info("webhook %s attempt %d failed: %s", delivery, attempt, exc)
            if attempt < self._attempts:
                await asyncio.sleep(delay)
                delay *= 2
        _log.warning("webhook %s not delivered after %d attempts", delivery, self._attempts)
        return False

    async def _post(self, url: str, body: bytes, delivery: str) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "imagecore-webhook/1",
            "Imagecore-Delivery": delivery,
            "Imagecore-Signature": f"t={now},v1={signature(self._secret, now, body)}",
        }
        async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as r:
            return 200 <= r.status < 300  # noqa: PLR2004 - the success range

    async def _allowed(self, url: str) -> bool:
        if self._allow_private:
            return True
        parsed = urllib.parse.urlsplit(url)
        try:
            found = await self._resolve(parsed.hostname or "", parsed.port or 80)
        except OSError:
            return True  # unresolvable now: the POST fails and is retried
        # Every address must be public: a name that also resolves to a private one
        # could be connected there.
        return all(ipaddress.ip_address(address).is_global for address in found)

    async def close(self) -> None:
        """Stop pending deliveries and close the client."""
        for task in self._pending:
            task.cancel()
        for task in list(self._pending):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
