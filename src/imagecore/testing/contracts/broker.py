"""The `MessageBroker` contract: subclass with a ``broker`` fixture to run it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from imagecore.model import Status
from imagecore.ports import Delivery, JobMessage, MessageBroker, Notification

WAIT = 5.0


def job(n: int, attempt: int = 0) -> JobMessage:
    detail_id = f"{n:024x}"
    return JobMessage(
        instruction_id="0" * 24,
        instruction_detail_id=detail_id,
        user_id="alice",
        dedup_id=f"{detail_id}:{attempt}",
    )


def notification(n: int, user: str = "alice") -> Notification:
    return Notification(
        user_id=user,
        instruction_id="0" * 24,
        instruction_detail_id=f"{n:024x}",
        status=Status.DONE,
        product_key="images/resize",
        output_size=1234,
    )


async def next_delivery(jobs: AsyncIterator[Delivery], seconds: float = WAIT) -> Delivery:
    return await asyncio.wait_for(anext(jobs), seconds)


async def nothing_within(jobs: AsyncIterator[Delivery], seconds: float) -> bool:
    task = asyncio.ensure_future(anext(jobs))
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if done:
        delivery = task.result()
        await delivery.nak()
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await task
    return True


class MessageBrokerContract:
    """Behaviour every broker adapter must show."""

    # Async tests under pytest-asyncio's strict mode too (the default of a new project).
    pytestmark = pytest.mark.asyncio

    async def test_a_published_job_is_delivered(self, broker: MessageBroker) -> None:
        await broker.publish_job(job(1))
        jobs = broker.jobs()
        delivery = await next_delivery(jobs)
        assert delivery.job == job(1)
        assert delivery.delivery_count == 1
        await delivery.ack()

    async def test_an_acked_job_is_not_delivered_again(self, broker: MessageBroker) -> None:
        await broker.publish_job(job(2))
        jobs = broker.jobs()
        await (await next_delivery(jobs)).ack()
        assert await nothing_within(jobs, 1.0)

    async def test_a_second_publish_with_the_same_id_is_dropped(
        self, broker: MessageBroker
    ) -> None:
        await broker.publish_job(job(3))
        await broker.publish_job(job(3))
        jobs = broker.jobs()
        await (await next_delivery(jobs)).ack()
        assert await nothing_within(jobs, 1.0)

    async def test_a_new_attempt_is_a_new_job(self, broker: MessageBroker) -> None:
        await broker.publish_job(job(4, attempt=0))
        await broker.publish_job(job(4, attempt=1))
        jobs = broker.jobs()
        first, second = await next_delivery(jobs), await next_delivery(jobs)
        assert {first.job.dedup_id, second.job.dedup_id} == {job(4, 0).dedup_id, job(4, 1).dedup_id}
        await first.ack()
        await second.ack()

    async def test_a_naked_job_comes_back_counted(self, broker: MessageBroker) -> None:
        await broker.publish_job(job(5))
        jobs = broker.jobs()
        first = await next_delivery(jobs)
        await first.in_progress()
        await first.nak()
        again = await next_delivery(jobs)
        assert again.job == job(5)
        assert again.delivery_count == 2
        await again.ack()

    async def test_a_delayed_nak_waits_before_redelivery(self, broker: MessageBroker) -> None:
        await broker.publish_job(job(6))
        jobs = broker.jobs()
        await (await next_delivery(jobs)).nak(delay=1.5)
        assert await nothing_within(jobs, 0.7)
        again = await next_delivery(jobs)
        assert again.job == job(6)
        await again.ack()

    async def test_two_consumers_share_the_jobs(self, broker: MessageBroker) -> None:
        for n in range(10, 20):
            await broker.publish_job(job(n))
        a, b = broker.jobs(), broker.jobs()
        seen: list[str] = []

        async def drain(jobs: AsyncIterator[Delivery]) -> None:
            with contextlib.suppress(TimeoutError):
                while True:
                    delivery = await next_delivery(jobs, seconds=1.5)
                    seen.append(delivery.job.instruction_detail_id)
                    await delivery.ack()

        await asyncio.gather(drain(a), drain(b))
        assert sorted(seen) == [f"{n:024x}" for n in range(10, 20)]

    async def test_queue_depth_counts_waiting_jobs(self, broker: MessageBroker) -> None:
        for n in range(30, 33):
            await broker.publish_job(job(n))

        async def settled() -> int:
            for _ in range(50):
                depth = await broker.queue_depth()
                if depth == 3:
                    return depth
                await asyncio.sleep(0.1)
            return depth

        assert await settled() == 3

    async def test_every_subscriber_gets_each_notification(self, broker: MessageBroker) -> None:
        async with broker.notifications() as first, broker.notifications() as second:
            await broker.publish_notification(notification(1))
            got = await asyncio.wait_for(anext(first), WAIT)
            also = await asyncio.wait_for(anext(second), WAIT)
        assert got == notification(1)
        assert also == notification(1)

    async def test_notifications_arrive_in_order(self, broker: MessageBroker) -> None:
        async with broker.notifications() as events:
            for n in range(5):
                await broker.publish_notification(notification(n))
            got = [await asyncio.wait_for(anext(events), WAIT) for _ in range(5)]
        assert got == [notification(n) for n in range(5)]

    async def test_a_notification_before_subscribing_is_not_received(
        self, broker: MessageBroker
    ) -> None:
        await broker.publish_notification(notification(98))
        async with broker.notifications() as events:
            await broker.publish_notification(notification(99))
            got = await asyncio.wait_for(anext(events), WAIT)
        assert got == notification(99)

    async def test_ping_answers(self, broker: MessageBroker) -> None:
        await broker.ping()


__all__ = ["MessageBrokerContract", "job", "notification"]
