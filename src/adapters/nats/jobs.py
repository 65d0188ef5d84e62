"""The consuming side of the NATS broker, and the one place nats errors are translated.

A worker pulls jobs from a durable JetStream pull consumer one message at a
time: it takes the next job only once it has a slot for it, so it never holds
messages it cannot start before their ``ack_wait`` runs out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator

import attrs
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from imagecore.errors import DependencyUnavailable
from imagecore.ports import JobMessage

__all__ = ["NatsDelivery", "NatsJobs", "require_connected", "translated"]

_log = logging.getLogger(__name__)

_JOB_FIELDS = tuple(field.name for field in attrs.fields(JobMessage))

Subscribe = Callable[[], Awaitable[JetStreamContext.PullSubscription]]


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn nats-py's exceptions into `DependencyUnavailable`, the one place this adapter does.

    Every nats error here means the broker did not answer as asked: not
    connected (``OutboundBufferLimitError`` while reconnecting, as we buffer
    nothing), closed, no JetStream responder, a timeout, or a JetStream API
    error such as a missing stream. Retrying later may work.
    """
    try:
        yield
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        detail = str(exc).removeprefix("nats: ") or type(exc).__name__
        raise DependencyUnavailable(
            "the message broker did not answer", f"nats: {action}: {detail}"
        ) from exc


def require_connected(client: Client, action: str) -> None:
    """Fail at once while the client reconnects, instead of queueing or waiting."""
    if not client.is_connected:
        state = "closed" if client.is_closed else "not connected"
        raise DependencyUnavailable(
            "the message broker is not connected", f"nats: {action}: {state}"
        )


def _job_from(data: bytes) -> JobMessage:
    """Parse our JSON; raise ``ValueError`` for anything else."""
    fields = json.loads(data)
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - ValueError means "not our message"
    values: dict[str, str] = {}
    for name in _JOB_FIELDS:
        if not isinstance(value := fields.get(name), str):
            raise ValueError(f"{name!r} is not a string")  # noqa: TRY004 - see above
        values[name] = value
    return JobMessage(**values)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@attrs.define
class NatsDelivery:
    """One JetStream message, settled once.

    Settling is best effort and never raises: if the connection is down the
    ack is lost, JetStream redelivers after ``ack_wait`` and the repository
    (which already holds the outcome) decides what the redelivery does.
    """

    job: JobMessage
    delivery_count: int
    _msg: Msg
    _settled: bool = False

    async def ack(self) -> None:
        await self._settle("ack", self._msg.ack)

    async def nak(self, delay: float = 0.0) -> None:
        await self._settle("nak", lambda: self._msg.nak(delay=delay if delay > 0 else None))

    async def in_progress(self) -> None:
        if not self._settled:
            await self._send("in_progress", self._msg.in_progress)

    async def _settle(self, what: str, send: Callable[[], Awaitable[None]]) -> None:
        if self._settled:
            return
        self._settled = True
        await self._send(what, send)

    async def _send(self, what: str, send: Callable[[], Awaitable[None]]) -> None:
        try:
            with translated(what):
                await send()
        except DependencyUnavailable as exc:
            _log.warning("%s of job %s not sent: %s", what, self.job.dedup_id, exc)


class NatsJobs:
    """A worker's view of the pull consumer; cancelling a wait loses no message.

    The fetch runs in its own task, which puts what it gets in ``_ready``;
    ``__anext__`` only waits on it (shielded). A cancelled wait leaves the
    fetch running, and the next call hands out its message instead of leaving
    it unacknowledged until ``ack_wait``. After a failure the pull
    subscription is dropped (an abandoned iterator holds nothing) and made
    again by the next call.
    """

    def __init__(self, client: Client, subscribe: Subscribe, fetch_timeout: float) -> None:
        self._client = client
        self._subscribe = subscribe
        self._fetch_timeout = fetch_timeout
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._ready: collections.deque[Msg] = collections.deque()
        self._closed = False

    def __aiter__(self) -> NatsJobs:
        return self

    async def __anext__(self) -> NatsDelivery:
        while True:
            if self._closed:
                raise DependencyUnavailable("nats: the broker is closed")
            if self._ready:
                if delivery := await self._delivery(self._ready.popleft()):
                    return delivery
                continue
            if self._fetching is None:
                self._fetching = asyncio.create_task(self._fetch(), name="nats-jobs-fetch")
            fetching = self._fetching
            try:
                await asyncio.shield(fetching)
            except asyncio.CancelledError:
                if not fetching.cancelled() or _being_cancelled():
                    raise  # our wait was cancelled: the fetch goes on for the next call
                raise DependencyUnavailable("nats: the broker is closed") from None
            finally:
                if fetching.done() and self._fetching is fetching:
                    self._fetching = None

    async def _fetch(self) -> None:
        try:
            with translated("fetch"):
                if self._subscription is None:
                    self._subscription = await self._subscribe()
                with contextlib.suppress(nats.errors.TimeoutError):
                    # One at a time: the worker asks for the next job only when it can start it.
                    self._ready.extend(await self._subscription.fetch(1, self._fetch_timeout))
            if not self._ready:
                # Nothing to do yet (the caller asks again), or the connection
                # dropped while the pull was on the server: say so.
                require_connected(self._client, "fetch")
        except DependencyUnavailable:
            await self._unsubscribe()
            raise

    @staticmethod
    async def _delivery(msg: Msg) -> NatsDelivery | None:
        try:
            job = _job_from(msg.data)
            count = msg.metadata.num_delivered
        except (ValueError, nats.errors.NotJSMessageError) as exc:
            _log.warning("dropping a malformed job message on %s: %s", msg.subject, exc)
            with contextlib.suppress(DependencyUnavailable), translated("term"):
                await msg.term()  # never redeliver what no worker can read
            return None
        return NatsDelivery(job, count, msg)

    async def aclose(self) -> None:
        """Stop fetching; give back what was fetched but not handed out."""
        self._closed = True
        if self._fetching is not None:
            self._fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError, DependencyUnavailable):
                await self._fetching
            self._fetching = None
        while self._ready:
            msg = self._ready.popleft()
            with contextlib.suppress(DependencyUnavailable), translated("nak"):
                await msg.nak()
        await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(DependencyUnavailable), translated("unsubscribe"):
                await subscription.unsubscribe()
