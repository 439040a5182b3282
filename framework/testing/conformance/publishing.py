"""Publishing promises: delay, byte-exact headers and bodies, 1 MB, confirmation."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from framework.broker.message import Message
from framework.broker.router import Router
from framework.testing.conformance.base import NOT_UTF8, ConformanceBase, header_raw, header_text
from framework.testing.conformance.harness import Harness

__all__ = ["PublishPromises"]


class PublishPromises(ConformanceBase):
    """Publishing promises: delay, byte-exact headers and bodies, 1 MB, confirmation."""

    async def test_delay(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        publisher = await harness.publisher()
        if "delay" in self.not_applicable:
            with pytest.raises(NotImplementedError):
                await publisher.publish(topic, b"later", delay=1.0)
            return
        inbox = harness.inbox()
        loop = asyncio.get_running_loop()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add((message.body, loop.time()))

        await harness.serve(router)
        sent = loop.time()
        await publisher.publish(topic, b"later", delay=1.0)
        await publisher.publish(topic, b"now")
        await inbox.count(2, "the immediate and the delayed message")
        [(first, _), (second, arrived)] = inbox.items
        assert (first, second) == (b"now", b"later")
        assert arrived - sent >= 0.95, f"delivered {arrived - sent:.3f}s after publish"

    async def test_bytes_exact(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        dead = await self._dead_letters(harness, topic)
        body = bytes(range(256)) * 16
        raw_headers = {"x-text": "grüße ✓".encode(), "x-binary": NOT_UTF8, "x-empty": b""}
        delivered = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group(), retry=1)
        async def handle(message: Message) -> None:
            delivered.add(message)
            raise ValueError("to the dead-letter queue, as a faithful copy")

        await harness.serve(router)
        publisher = await harness.publisher()
        headers = {name: header_text(raw) for name, raw in raw_headers.items()}
        for odd in ({"x-number": 1}, {"x-none": None}, {"x-bytes": b"raw"}, {1: "name"}):
            with pytest.raises(TypeError, match="header"):  # the str -> str contract
                await publisher.publish(topic, body, headers=odd)  # type: ignore[arg-type]
        await publisher.publish(topic, body, key=b"\x00\xffkey", headers=headers)
        [message] = await delivered.count(1, "the delivery")
        [letter] = await dead.count(1, "the dead letter")
        for where, got in (("handler", message), ("dead letter", letter)):
            assert got.body == body, f"{where}: body changed"
            for name, raw in raw_headers.items():
                assert header_raw(got, name) == raw, f"{where}: header {name} changed"

    async def test_large_body(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        body = random.Random(7).randbytes(1_000_000)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(router)
        publisher = await harness.publisher()
        await publisher.publish(topic, body)
        [got] = await inbox.count(1, "the 1 MB message")
        assert len(got) == len(body)
        assert got == body

    async def test_publish_confirm(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, self.partitions)
        router = Router()

        @router.subscriber(topic, group=group)
        async def declare(message: Message) -> None:
            raise AssertionError("nothing is published while the group is being declared")

        # The group exists before the publish (a RabbitMQ queue must be bound to get it).
        declaring = await harness.serve(router, name="declaring")
        await declaring.stop(self.timeout)

        publisher = await harness.publisher()
        bodies = [f"p-{i}".encode() for i in range(20)]
        for body in bodies:
            result = await publisher.publish(topic, body, key=body)
            assert result.topic == topic
        # Whatever the client had not sent yet would be lost now.
        with contextlib.suppress(NotImplementedError):  # in-process: nothing to lose
            await self.drop_connections()

        inbox = harness.inbox()
        second = Router()

        @second.subscriber(topic, group=group)
        async def consume(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(second, name="new-consumer")
        await inbox.until(lambda items: set(bodies) <= set(items), "every confirmed message")
