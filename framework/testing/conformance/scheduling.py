"""Scheduled-delivery promises: ``deliver_at`` and a delayed message outliving its publisher.

The ``delay`` promise itself stays with the publishing promises
(:mod:`~framework.testing.conformance.publishing`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from framework.broker.message import Message
from framework.broker.router import Router
from framework.testing.conformance.base import ConformanceBase
from framework.testing.conformance.harness import Harness

__all__ = ["SchedulingPromises"]

#: How far ahead the tests schedule (seconds): long enough to tell early from on time.
_AHEAD = 1.0
#: Rounding a broker may apply to a due time (milliseconds on every broker here).
_SLACK = 0.05


class SchedulingPromises(ConformanceBase):
    """Scheduled-delivery promises (see :data:`~framework.testing.conformance.PROMISES`)."""

    async def test_deliver_at(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        publisher = await harness.publisher()
        soon = datetime.now(UTC) + timedelta(seconds=_AHEAD)
        with pytest.raises(ValueError, match="timezone-aware"):
            await publisher.publish(topic, b"naive", deliver_at=soon.replace(tzinfo=None))
        with pytest.raises(ValueError, match="not both"):
            await publisher.publish(topic, b"both", delay=1.0, deliver_at=soon)
        if "deliver_at" in self.not_applicable:
            with pytest.raises(NotImplementedError):
                await publisher.publish(topic, b"later", deliver_at=soon)
            return
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add((message.body, time.time()))

        await harness.serve(router)
        # Scheduled after the server started, so the time to start does not eat the margin.
        due = datetime.now(UTC) + timedelta(seconds=_AHEAD)
        await publisher.publish(topic, b"later", deliver_at=due)
        await publisher.publish(topic, b"past", deliver_at=due - timedelta(hours=1))
        await publisher.publish(topic, b"now")
        await inbox.count(3, "the scheduled, the past-due and the immediate message")
        bodies = [body for body, _ in inbox.items]
        assert bodies == [b"past", b"now", b"later"], f"delivered in the order {bodies}"
        arrived = inbox.items[2][1]
        assert arrived >= due.timestamp() - _SLACK, (
            f"delivered {due.timestamp() - arrived:.3f}s before its deliver_at"
        )

    async def test_delay_outlives_publisher(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, 1)
        publisher = await harness.publisher()
        if "delay_outlives_publisher" in self.not_applicable:
            with pytest.raises(NotImplementedError):
                await publisher.publish(topic, b"later", delay=_AHEAD)
            return
        router = Router()

        @router.subscriber(topic, group=group)
        async def declare(message: Message) -> None:
            raise AssertionError("nothing is due while the group is being declared")

        # The group exists first (a RabbitMQ queue must be bound to get the message), and
        # nothing of this test runs afterwards until the publisher is gone.
        declaring = await harness.serve(router, name="declaring")
        await declaring.stop(self.timeout)
        await publisher.publish(topic, b"later", delay=_AHEAD / 2)
        await publisher.close()
        # The message falls due while no broker of this test is connected: it must wait
        # wherever the broker keeps it (a delay topic, a schedule, a TTL queue).
        await asyncio.sleep(_AHEAD)
        inbox = harness.inbox()
        second = Router()

        @second.subscriber(topic, group=group)
        async def consume(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(second, name="consumer")
        assert await inbox.count(1, "the delayed message") == [b"later"]
