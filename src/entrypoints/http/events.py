"""Live progress over Server-Sent Events.

``GET /instructions/{id}/events`` streams one instruction's file events and
``GET /events`` all of the caller's. Each event carries the JSON of the NATS
notification; its id is the millisecond of the change, so a client that
reconnects with ``Last-Event-ID`` first gets every file changed since then
(read from the repository: nothing is missed even if another process did
the work while it was away), then the live stream. A replay starts *at* that
millisecond, not after it: two files can change in the same millisecond, so
a client may see its last event again but never misses one. A comment line
every ``HEARTBEAT`` seconds keeps proxies from closing an idle stream.

Authentication is the usual ``Authorization`` header, so a browser reads
these routes with ``fetch()`` and a stream reader (as the console does)
rather than ``EventSource``, which cannot send headers; no token ever goes
into a URL. When the server stops, open streams end at once (a client
reconnects elsewhere with ``Last-Event-ID``) instead of holding the shutdown.
A stream also ends when its token expires (``exp`` plus the leeway: a client
reconnects with a fresh token) and soon after its client goes away, and at
most ``MAX_EVENT_STREAMS_PER_USER`` and ``MAX_EVENT_STREAMS_PER_ADDRESS`` are
open at once (`entrypoints.http.streams`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from entrypoints.http.auth import Identity
from entrypoints.http.context import RUNTIME, identify
from entrypoints.http.inputs import event_id
from entrypoints.http.streams import EVENT_STREAMS, held
from imagecore import services
from imagecore.model import InstructionDetail
from imagecore.ports import InstructionQuery, Notification
from imagecore.processing import notification_for

__all__ = [
    "HEARTBEAT",
    "PEER_CHECK",
    "end_streams_on_shutdown",
    "instruction_events",
    "user_events",
]

#: Seconds between heartbeats; read on every wait, so tests may lower it.
HEARTBEAT = 15.0
#: Seconds between looks at whether the client is still there: aiohttp does not end a
#: handler whose client went away, and an open stream holds its place under the caps.
PEER_CHECK = 1.0
_SNAPSHOT_INSTRUCTIONS = 50
#: Files whose last sent change a stream remembers, to drop stale live duplicates.
_REMEMBERED = 10_000

_CLOSING = web.AppKey("sse_closing", asyncio.Event)


def _moment(at: str) -> datetime | None:
    try:
        return datetime.fromisoformat(at)
    except ValueError:
        return None


def _event_id(at: str) -> str:
    moment = _moment(at) or datetime.now(UTC)
    return str(int(moment.timestamp() * 1000))


def _frame(notification: Notification) -> bytes:
    data: dict[str, Any] = notification.to_dict()
    data["status"] = notification.status.value
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {_event_id(notification.at)}\nevent: status\ndata: {body}\n\n".encode()


def _since(request: web.Request) -> int:
    """The millisecond of ``Last-Event-ID`` (or ``?last_event_id``), -1 without one."""
    if raw := request.headers.get("Last-Event-ID", "").strip():
        return event_id("Last-Event-ID", raw)
    if raw := request.query.get("last_event_id", "").strip():
        return event_id("last_event_id", raw)
    return -1


def _snapshot(details: list[InstructionDetail], since: int) -> list[Notification]:
    changed = [d for d in details if int(d.updated_at.timestamp() * 1000) >= since]
    changed.sort(key=lambda d: (d.updated_at, d.id))
    return [notification_for(d) for d in changed]


class _Sent:
    """The latest change sent per file, so a live event older than the snapshot is dropped.

    A notification published between subscribing and reading the repository
    arrives after the snapshot that already holds a newer state: without this
    a client would see DONE, then PROCESSING.
    """

    def __init__(self) -> None:
        self._latest: OrderedDict[str, datetime] = OrderedDict()

    def is_stale(self, notification: Notification) -> bool:
        moment = _moment(notification.at)
        last = self._latest.get(notification.instruction_detail_id)
        return moment is not None and last is not None and moment <= last

    def record(self, notification: Notification) -> None:
        moment = _moment(notification.at)
        if moment is None:
            return
        self._latest[notification.instruction_detail_id] = moment
        self._latest.move_to_end(notification.instruction_detail_id)
        if len(self._latest) > _REMEMBERED:
            self._latest.popitem(last=False)


async def _ticks(
    live: AsyncIterator[Notification], request: web.Request, deadline: float | None
) -> AsyncGenerator[Notification | None, None]:
    """Live notifications, and None after each ``HEARTBEAT`` of silence.

    Ends when the broker ends the subscription, the server shuts down, the
    client has gone away, or at ``deadline`` (the loop's clock).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.ensure_future(request.app[_CLOSING].wait())
    pending: asyncio.Future[Notification] | None = None
    quiet_since = loop.time()
    try:
        while not _gone(request):
            now = loop.time()
            left = math.inf if deadline is None else deadline - now
            if left <= 0:
                return
            pending = pending or asyncio.ensure_future(anext(live))
            waiting: set[asyncio.Future[Any]] = {pending, stop}
            timeout = min(PEER_CHECK, quiet_since + HEARTBEAT - now, left)
            done, _ = await asyncio.wait(
                waiting, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
            )
            if pending in done:
                finished, pending = pending, None
                try:
                    notification = finished.result()
                except StopAsyncIteration:
                    return  # the broker ended the subscription
                quiet_since = loop.time()
                yield notification
            elif stop in done:
                return
            elif loop.time() >= quiet_since + HEARTBEAT:
                quiet_since = loop.time()
                yield None
    finally:
        for task in (pending, stop):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await task


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _wanted(notification: Notification, user_id: str, instruction_id: str | None) -> bool:
    return notification.user_id == user_id and (
        instruction_id is None or notification.instruction_id == instruction_id
    )


async def _stream(
    request: web.Request,
    who: Identity,
    instruction_id: str | None,
    backlog: list[Notification],
    live: AsyncIterator[Notification],
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = None
    if who.expires_at is not None:
        deadline = loop.time() + who.expires_at - time.time()
    sent = _Sent()
    try:
        await response.write(b"retry: 2000\n\n")
        for notification in backlog:
            await response.write(_frame(notification))
            sent.record(notification)
        async with contextlib.aclosing(_ticks(live, request, deadline)) as ticks:
            async for tick in ticks:
                if tick is None:
                    await response.write(b": heartbeat\n\n")
                elif _wanted(tick, who.user_id, instruction_id) and not sent.is_stale(tick):
                    await response.write(_frame(tick))
                    sent.record(tick)
        if deadline is not None and loop.time() >= deadline:
            await response.write(b": the token has expired: reconnect with a new one\n\n")
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; it reconnects with Last-Event-ID if it wants more
    return response


async def instruction_events(request: web.Request) -> web.StreamResponse:
    """``GET /instructions/{id}/events``: the caller's instruction only."""
    who = identify(request)
    since = _since(request)
    runtime = request.app[RUNTIME]
    async with held(request, who, EVENT_STREAMS, "too_many_streams") as refused:
        if refused is not None:
            return refused
        async with runtime.broker.notifications() as live:
            # Subscribed first, then read: a change between the two shows up in
            # the snapshot and live; the live copy is dropped as stale.
            details = await services.list_details(
                runtime.repository, user_id=who.user_id, instruction_id=request.match_info["id"]
            )
            backlog = _snapshot(details, since)
            return await _stream(request, who, request.match_info["id"], backlog, live)


async def user_events(request: web.Request) -> web.StreamResponse:
    """``GET /events``: every instruction of the caller (the replay covers the newest 50)."""
    who = identify(request)
    since = _since(request)
    runtime = request.app[RUNTIME]
    async with held(request, who, EVENT_STREAMS, "too_many_streams") as refused:
        if refused is not None:
            return refused
        async with runtime.broker.notifications() as live:
            backlog: list[Notification] = []
            if since >= 0:
                page = await runtime.repository.list_instructions(
                    InstructionQuery(user_id=who.user_id, size=_SNAPSHOT_INSTRUCTIONS)
                )
                for instruction in page.items:
                    details = await runtime.repository.list_details(instruction.id)
                    backlog += _snapshot(details, since)
                backlog.sort(key=lambda n: (int(_event_id(n.at)), n.instruction_detail_id))
            return await _stream(request, who, None, backlog, live)


async def _end_streams(app: web.Application) -> None:
    app[_CLOSING].set()


def end_streams_on_shutdown(app: web.Application) -> None:
    """End every open stream when the server shuts down, so that it need not wait for them."""
    app[_CLOSING] = asyncio.Event()
    app.on_shutdown.append(_end_streams)
