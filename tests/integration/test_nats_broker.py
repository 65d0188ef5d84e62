"""The broker contract and NATS's own promises, against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time

import nats
import pytest

from adapters.nats.broker import NatsMessageBroker
from devtools import devstack
from imagecore.errors import DependencyUnavailable
from imagecore.testing.contracts.broker import (
    MessageBrokerContract,
    job,
    next_delivery,
    notification,
)

pytestmark = pytest.mark.integration


def names() -> dict[str, str]:
    """A stream, consumer and subjects of its own, so tests on one server stay apart."""
    suffix = secrets.token_hex(4)
    return {
        "jobs_subject": f"test.{suffix}.image.requests",
        "notifications_subject": f"test.{suffix}.notifications.sse",
        "stream": f"IMAGE_REQUESTS_{suffix}",
        "durable": f"workers-{suffix}",
    }


@contextlib.asynccontextmanager
async def opened(url, **options):
    broker = await NatsMessageBroker.open(url, **{**names(), **options})
    try:
        yield broker
    finally:
        await broker.close()


async def wait_until_pingable(broker, seconds=15.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            await broker.ping()
        except DependencyUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        else:
            return


@pytest.fixture
async def broker(nats_server):
    async with opened(nats_server.url) as broker:
        yield broker


async def settled_depth(broker, expected, seconds=5.0):
    """The queue depth once it reads ``expected``, or the last reading (acks are asynchronous)."""
    for _ in range(round(seconds / 0.1)):
        if (depth := await broker.queue_depth()) == expected:
            break
        await asyncio.sleep(0.1)
    return depth


class TestNatsMessageBroker(MessageBrokerContract):
    """The contract, through the ``broker`` fixture above."""


@pytest.fixture
def own_nats(tmp_path):
    """A server of this test's own, which it may kill."""
    handles = [devstack.start_nats(tmp_path / "nats")]
    yield handles
    devstack.stop(handles[-1])


async def test_a_queued_job_survives_kill_9_and_the_broker_reconnects_by_itself(own_nats):
    async with opened(own_nats[0].url) as broker:
        await broker.publish_job(job(1))

        assert devstack.kill(own_nats[0]) == -signal.SIGKILL
        own_nats.append(devstack.restart(own_nats[0]))
        await wait_until_pingable(broker)
        jobs = broker.jobs()
        delivery = await next_delivery(jobs, seconds=10.0)
        await delivery.ack()

    assert delivery.job == job(1)


async def test_publishing_while_the_server_is_down_fails_fast_and_ping_recovers(own_nats):
    async with opened(own_nats[0].url) as broker:
        await broker.ping()
        devstack.kill(own_nats[0])

        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            await broker.publish_job(job(2))
        with pytest.raises(DependencyUnavailable):
            await broker.publish_notification(notification(2))
        with pytest.raises(DependencyUnavailable):
            await broker.ping()
        failed_within = time.monotonic() - started

        own_nats.append(devstack.restart(own_nats[0]))
        await wait_until_pingable(broker)
        await broker.publish_job(job(3))
        delivery = await next_delivery(broker.jobs())
        await delivery.ack()

    assert failed_within < 2.5
    assert delivery.job == job(3)


async def test_a_worker_loop_gets_an_error_while_down_and_jobs_again_after(own_nats):
    async with opened(own_nats[0].url, fetch_timeout=1.0) as broker:
        devstack.kill(own_nats[0])
        with pytest.raises(DependencyUnavailable):
            # A pull already on its way when the connection drops ends with the fetch timeout.
            await next_delivery(broker.jobs(), seconds=3.0)
        own_nats.append(devstack.restart(own_nats[0]))
        await wait_until_pingable(broker)
        await broker.publish_job(job(4))
        delivery = await next_delivery(broker.jobs())
        await delivery.ack()

    assert delivery.job == job(4)


async def test_an_unacked_delivery_comes_back_after_ack_wait(nats_server):
    async with opened(nats_server.url, ack_wait_seconds=1.0) as broker:
        await broker.publish_job(job(5))
        jobs = broker.jobs()
        first = await next_delivery(jobs)  # and never settled: a worker that died
        again = await next_delivery(jobs)
        await again.ack()

    assert (first.job, first.delivery_count) == (job(5), 1)
    assert (again.job, again.delivery_count) == (job(5), 2)


async def test_a_notification_reaches_the_subscribers_of_every_process(nats_server):
    options = names()
    async with (
        opened(nats_server.url, **options) as api_1,
        opened(nats_server.url, **options) as api_2,
        api_1.notifications() as on_1,
        api_2.notifications() as on_2,
    ):
        await api_2.publish_notification(notification(6))
        got_1 = await asyncio.wait_for(anext(on_1), 5.0)
        got_2 = await asyncio.wait_for(anext(on_2), 5.0)

    assert got_1 == got_2 == notification(6)


async def test_two_processes_share_one_queue(nats_server):
    options = names()
    async with (
        opened(nats_server.url, **options) as worker_1,
        opened(nats_server.url, **options) as worker_2,
    ):
        await worker_1.publish_job(job(7))
        await worker_2.publish_job(job(7))  # the reaper's second publish of the same attempt
        delivery = await next_delivery(worker_2.jobs())
        await delivery.ack()
        depth = await settled_depth(worker_1, 0)

    assert delivery.job == job(7)
    assert depth == 0


async def test_a_cancelled_wait_loses_no_job(broker):
    jobs = broker.jobs()
    waiting = asyncio.ensure_future(anext(jobs))
    await asyncio.sleep(0.3)  # the fetch is on the server now
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await broker.publish_job(job(8))

    delivery = await next_delivery(jobs, seconds=2.0)  # not after ack_wait (60 s)
    await delivery.ack()

    assert (delivery.job, delivery.delivery_count) == (job(8), 1)


async def test_a_malformed_message_is_dropped_and_the_next_job_delivered(broker):
    client = await nats.connect(broker._client.connected_url.geturl())
    try:
        await client.jetstream().publish(broker._jobs_subject, b"not json")
    finally:
        await client.close()
    await broker.publish_job(job(9))

    delivery = await next_delivery(broker.jobs())
    await delivery.ack()

    assert delivery.job == job(9)
    assert await settled_depth(broker, 0) == 0  # terminated, not waiting for redelivery


async def test_settling_twice_is_harmless(broker):
    await broker.publish_job(job(10))
    delivery = await next_delivery(broker.jobs())
    await delivery.ack()
    await delivery.nak()
    await delivery.in_progress()

    assert delivery.job == job(10)


async def test_opening_twice_keeps_the_stream_and_its_jobs(nats_server):
    options = names()
    async with opened(nats_server.url, **options) as first:
        await first.publish_job(job(11))
    async with opened(nats_server.url, **options, ack_wait_seconds=30.0) as second:
        delivery = await next_delivery(second.jobs())
        await delivery.ack()

    assert delivery.job == job(11)


async def test_opening_without_a_server_fails_within_the_timeout():
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        await NatsMessageBroker.open("nats://127.0.0.1:1", connect_timeout=1.0)

    assert time.monotonic() - started < 2.0


async def test_closing_gives_back_a_fetched_job(broker):
    jobs = broker.jobs()
    waiting = asyncio.ensure_future(anext(jobs))
    await asyncio.sleep(0.3)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await broker.publish_job(job(12))
    await asyncio.sleep(0.3)  # the pending fetch takes it
    await jobs.aclose()

    delivery = await next_delivery(broker.jobs(), seconds=2.0)  # naked, not after ack_wait
    await delivery.ack()

    assert delivery.job == job(12)
