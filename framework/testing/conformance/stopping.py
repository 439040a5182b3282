"""Promises across a stop: a crashed consumer, a graceful stop, a dropped connection."""

from __future__ import annotations

import asyncio

from framework.broker.message import Message
from framework.broker.router import Router
from framework.testing.conformance.base import ConformanceBase
from framework.testing.conformance.harness import Harness

__all__ = ["StopPromises"]


class StopPromises(ConformanceBase):
    """Promises across a stop: a crashed consumer, a graceful stop, a dropped connection."""

    async def test_crashed_consumer(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, 1)
        bodies = [f"c-{i}".encode() for i in range(3)]
        taken = asyncio.Event()
        never = asyncio.Event()
        first = Router()

        # The consumer comes back as the same instance (server name) with the same subscriber
        # name, as a restarted pod would: where a broker keeps a consumer's unacknowledged
        # messages in a session of its own (MQTT), only that identity resumes it.
        @first.subscriber(topic, group=group, name="worker")
        async def dies(message: Message) -> None:
            taken.set()
            await never.wait()  # in the middle of the work when the consumer dies

        crashing = await harness.serve(first, name="instance")
        publisher = await harness.publisher()
        for body in bodies:
            await publisher.publish(topic, body, key=b"one-key")
        async with asyncio.timeout(self.timeout):
            await taken.wait()
        await self.crash(crashing)

        inbox = harness.inbox()
        second = Router()

        @second.subscriber(topic, group=group, name="worker")
        async def survives(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(second, name="instance")
        await inbox.until(lambda items: set(bodies) <= set(items), "the crashed consumer's work")

    async def test_graceful_stop(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, self.partitions)
        bodies = {f"s-{i}".encode() for i in range(12)}
        started: list[bytes] = []
        finished: list[bytes] = []
        first_started = asyncio.Event()
        first = Router()

        @first.subscriber(topic, group=group, concurrency=2)
        async def slow(message: Message) -> None:
            started.append(message.body)
            first_started.set()
            await asyncio.sleep(0.2)  # the work itself: takes time, must not be cut
            finished.append(message.body)

        stopping = await harness.serve(first, name="stopping")
        publisher = await harness.publisher()
        for body in sorted(bodies):
            await publisher.publish(topic, body, key=body)
        async with asyncio.timeout(self.timeout):
            await first_started.wait()
        await stopping.stop(self.timeout)
        assert sorted(started) == sorted(finished), "a handler was cut short by stop()"
        assert len(finished) == len(set(finished)), f"handled twice: {finished}"

        rest = bodies - set(finished)
        inbox = harness.inbox()
        second = Router()

        @second.subscriber(topic, group=group)
        async def takes_over(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(second, name="next")
        sentinel = b"sentinel"
        await publisher.publish(topic, sentinel, key=sentinel)
        await inbox.until(
            lambda items: (rest | {sentinel}) <= set(items), "the work the stopped one left"
        )
        again = set(inbox.items) & set(finished)
        assert not again, f"finished before the stop, delivered again after: {sorted(again)}"

    async def test_reconnect(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(router)
        before = await harness.publisher("before")
        await before.publish(topic, b"before")
        await inbox.count(1, "the message before the drop")
        await self.drop_connections()
        # A fresh publisher: what is tested is the consumer's recovery, not the publisher's.
        after = await harness.publisher("after")
        await after.publish(topic, b"after")
        await inbox.until(lambda items: b"after" in items, "the message after the drop")
