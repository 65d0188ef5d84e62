"""The NATS broker: jobs on a JetStream work queue, notifications on core NATS.

Jobs go to a WORK_QUEUE stream with file storage (they survive a restart of
nats-server) and are deduplicated by their ``Nats-Msg-Id`` header inside the
stream's duplicate window. Every worker pulls from the same durable consumer
with explicit acks, ``ack_wait`` and a bounded ``max_deliver``: past that the
repository's reaper publishes the file again. Notifications are plain core
NATS messages, so every subscribed process gets each one and none is stored.

The connection reconnects forever, so a restarted server is picked up without
restarting the process. Nothing is buffered while it is down: publishing
raises `DependencyUnavailable` at once, and the caller (or the reaper) tries
again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any, Self

import attrs
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext

from adapters.nats.jobs import NatsDelivery, NatsJobs, require_connected, translated
from imagecore.errors import DependencyUnavailable
from imagecore.model import Status
from imagecore.ports import JobMessage, Notification

__all__ = ["NatsDelivery", "NatsMessageBroker"]

_log = logging.getLogger(__name__)

# JetStream's "stream name already in use with a different configuration".
_STREAM_CONFIG_DIFFERS = 10058
_NOTIFICATION_FIELDS = frozenset(field.name for field in attrs.fields(Notification))
# Loopback and LAN reconnects are quick; a PING every 10 s notices a dead peer
# that never closed the socket within about half a minute instead of minutes.
_RECONNECT_WAIT_SECONDS: Any = 0.5  # nats-py annotates it int; it is seconds, used as a float
_PING_INTERVAL_SECONDS = 10
_PING_TIMEOUT_SECONDS = 1.5
_FLUSH_TIMEOUT_SECONDS = 2  # nats-py takes whole seconds


class NatsMessageBroker:
    """`MessageBroker` on NATS JetStream; make one with `open`, end it with `close`.

    `queue_depth` counts the consumer's ``num_pending + num_ack_pending``: jobs
    not yet delivered plus jobs delivered but not yet acked (being worked on,
    waiting out a delayed nak, or due again after ``ack_wait``). JetStream
    cannot tell those apart, so unlike the in-memory broker the jobs in hand
    are counted too.
    """

    def __init__(  # noqa: PLR0913 - built by open() only
        self,
        client: Client,
        *,
        jobs_subject: str,
        notifications_subject: str,
        stream: str,
        durable: str,
        request_timeout: float,
        fetch_timeout: float,
        subscriber_buffer: int,
    ) -> None:
        self._client = client
        self._js: JetStreamContext = client.jetstream(timeout=request_timeout)
        self._jobs_subject = jobs_subject
        self._notifications_subject = notifications_subject
        self._stream = stream
        self._durable = durable
        self._request_timeout = request_timeout
        self._fetch_timeout = fetch_timeout
        self._subscriber_buffer = subscriber_buffer
        self._consumers: weakref.WeakSet[NatsJobs] = weakref.WeakSet()

    @classmethod
    async def open(  # noqa: PLR0913 - one keyword per JetStream setting
        cls,
        uri: str,
        *,
        jobs_subject: str = "image.requests",
        notifications_subject: str = "notifications.sse",
        stream: str = "IMAGE_REQUESTS",
        durable: str = "imagecore-workers",
        ack_wait_seconds: float = 60.0,
        max_deliver: int = 9,
        duplicate_window_seconds: float = 120.0,
        max_age_seconds: float = 7 * 24 * 3600.0,
        connect_timeout: float = 5.0,
        request_timeout: float = 2.0,
        fetch_timeout: float = 5.0,
        subscriber_buffer: int = 1_000,
    ) -> Self:
        """Connect, create or update the stream and the durable consumer.

        ``max_age_seconds`` bounds what the stream keeps: a message that ran
        out of deliveries stays in a work queue until then (the repository
        holds its file either way). Raises `DependencyUnavailable` if the
        server does not answer within ``connect_timeout``.
        """
        client = Client()
        try:
            with translated(f"connect to {uri}"):
                await asyncio.wait_for(_connect(client, uri, connect_timeout), connect_timeout)
            broker = cls(
                client,
                jobs_subject=jobs_subject,
                notifications_subject=notifications_subject,
                stream=stream,
                durable=durable,
                request_timeout=request_timeout,
                fetch_timeout=fetch_timeout,
                subscriber_buffer=subscriber_buffer,
            )
            await broker._declare(
                StreamConfig(
                    name=stream,
                    subjects=[jobs_subject],
                    retention=RetentionPolicy.WORK_QUEUE,
                    storage=StorageType.FILE,
                    duplicate_window=duplicate_window_seconds,
                    max_age=max_age_seconds,
                ),
                ConsumerConfig(
                    name=durable,
                    durable_name=durable,
                    filter_subject=jobs_subject,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=ack_wait_seconds,
                    max_deliver=max_deliver,
                ),
            )
        except BaseException:
            await client.close()
            raise
        return broker

    async def _declare(self, stream: StreamConfig, consumer: ConsumerConfig) -> None:
        with translated("declare the stream and consumer"):
            try:
                await self._js.add_stream(stream)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_CONFIG_DIFFERS:
                    raise
                await self._js.update_stream(stream)
            # CONSUMER.CREATE with a name creates the consumer or updates it in place.
            await self._js.add_consumer(self._stream, consumer)

    async def close(self) -> None:
        """Stop the jobs iterators (giving back what they fetched) and close the connection."""
        for consumer in list(self._consumers):
            await consumer.aclose()
        # nats-py's close drops what is still buffered: the last acks and naks (a
        # stopping worker's handed-back jobs) would then wait out ack_wait instead.
        if self._client.is_connected:
            with contextlib.suppress(Exception):
                await self._client.flush(timeout=_FLUSH_TIMEOUT_SECONDS)
        await self._client.close()

    # -- jobs ---------------------------------------------------------------------------

    async def publish_job(self, job: JobMessage) -> None:
        payload = json.dumps(job.to_dict()).encode()
        require_connected(self._client, "publish a job")
        with translated("publish a job"):
            await self._js.publish(
                self._jobs_subject,
                payload,
                timeout=self._request_timeout,
                stream=self._stream,
                headers={"Nats-Msg-Id": job.dedup_id},
            )

    def jobs(self) -> NatsJobs:
        consumer = NatsJobs(self._client, self._pull_subscription, self._fetch_timeout)
        self._consumers.add(consumer)
        return consumer

    async def _pull_subscription(self) -> JetStreamContext.PullSubscription:
        return await self._js.pull_subscribe_bind(consumer=self._durable, stream=self._stream)

    async def queue_depth(self) -> int:
        require_connected(self._client, "read the queue depth")
        with translated("read the queue depth"):
            info = await self._js.consumer_info(self._stream, self._durable)
        # Jobs waiting for a worker, as the in-process broker counts them: one
        # delivered but never settled (its worker gone, its nak lost) is not queued,
        # and the reaper's test for lost jobs must see its file as missing one.
        return info.num_pending or 0

    async def ping(self) -> None:
        require_connected(self._client, "ping")
        with translated("ping"):
            await asyncio.wait_for(self._js.stream_info(self._stream), _PING_TIMEOUT_SECONDS)

    # -- notifications ------------------------------------------------------------------

    async def publish_notification(self, notification: Notification) -> None:
        fields = notification.to_dict()
        fields["status"] = notification.status.value
        require_connected(self._client, "publish a notification")
        with translated("publish a notification"):
            await self._client.publish(self._notifications_subject, json.dumps(fields).encode())

    @contextlib.asynccontextmanager
    async def notifications(self) -> AsyncIterator[AsyncIterator[Notification]]:
        events = _Notifications(self._subscriber_buffer)
        require_connected(self._client, "subscribe to notifications")
        with translated("subscribe to notifications"):
            subscription = await self._client.subscribe(
                self._notifications_subject, cb=events.receive
            )
        try:
            with translated("subscribe to notifications"):
                # Once the server answers the PING it has the subscription: a
                # notification another process publishes from now on reaches us.
                timeout: Any = self._request_timeout  # annotated int, used as seconds
                await self._client.flush(timeout=timeout)
            yield events
        finally:
            with contextlib.suppress(DependencyUnavailable), translated("unsubscribe"):
                await subscription.unsubscribe()


class _Notifications:
    """One subscriber's bounded queue; when it is full the oldest notification goes."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(size)

    def __aiter__(self) -> _Notifications:
        return self

    async def __anext__(self) -> Notification:
        return await self._queue.get()

    async def receive(self, msg: Msg) -> None:
        try:
            notification = _notification_from(msg.data)
        except (ValueError, TypeError) as exc:
            _log.warning("dropping a malformed notification on %s: %s", msg.subject, exc)
            return
        if self._queue.full():
            # A subscriber that stopped reading loses its oldest event, not the connection.
            self._queue.get_nowait()
        self._queue.put_nowait(notification)


def _notification_from(data: bytes) -> Notification:
    fields = json.loads(data)
    if not isinstance(fields, dict):
        raise TypeError("not a JSON object")
    known = {name: value for name, value in fields.items() if name in _NOTIFICATION_FIELDS}
    known["status"] = Status(str(known.get("status")))
    return Notification(**known)


async def _connect(client: Client, uri: str, connect_timeout: float) -> None:
    async def disconnected() -> None:
        if not client.is_closed:  # close() calls this too
            _log.warning("nats: disconnected from %s, reconnecting", uri)

    async def reconnected() -> None:
        _log.warning("nats: reconnected to %s", uri)

    async def error(exc: Exception) -> None:
        # Refused connections repeat every half second while the server is down.
        level = logging.DEBUG if client.is_reconnecting or client.is_connecting else logging.WARNING
        _log.log(level, "nats: %r", exc)

    await client.connect(
        servers=[uri],
        name="imagecore",
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=_RECONNECT_WAIT_SECONDS,
        connect_timeout=max(1, round(connect_timeout)),
        ping_interval=_PING_INTERVAL_SECONDS,
        # No buffer while reconnecting: publish fails at once (OutboundBufferLimitError)
        # instead of queueing messages nobody is told about.
        pending_size=0,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
    )
