"""Producer promises: where a keyed message lands (partitions), acknowledgement levels."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from framework.broker.acks import ACKS_LEVELS
from framework.broker.message import Message
from framework.broker.router import Router
from framework.testing.conformance.base import ConformanceBase
from framework.testing.conformance.harness import Harness

__all__ = ["ProducerPromises"]


class ProducerPromises(ConformanceBase):
    """Producer promises: ``key_partition`` and ``acks_levels``."""

    async def test_key_partition(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        publisher = await harness.publisher()
        if "key_partition" in self.not_applicable:  # no partitions: refused, never ignored
            with pytest.raises(NotImplementedError):
                await publisher.publish(topic, b"pinned", partition=0)
            return
        keys = [f"key-{i}".encode() for i in range(6)]
        per_key = 5
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add(message)

        await harness.serve(router)
        landed: dict[bytes, set[int | None]] = {key: set() for key in keys}
        for seq in range(per_key):
            for key in keys:
                result = await publisher.publish(topic, f"{seq}".encode(), key=key)
                landed[key].add(result.partition)
        pinned = {}
        for partition in range(self.partitions):
            result = await publisher.publish(topic, b"pinned", key=b"any", partition=partition)
            assert result.partition == partition, "the explicit partition was not honoured"
            pinned[partition] = result
        with pytest.raises(ValueError):
            await publisher.publish(topic, b"nowhere", partition=self.partitions + 7)
        total = len(keys) * per_key + self.partitions
        messages: list[Message] = await inbox.count(total, "every message")
        for key, partitions in landed.items():
            assert len(partitions) == 1 and None not in partitions, f"{key!r}: {partitions}"
        for message in messages:
            if message.body == b"pinned":
                continue
            assert message.key is not None
            assert {message.partition} == landed[message.key], "delivered from elsewhere"
        for key in keys:
            order = [int(m.body) for m in messages if m.key == key]
            assert order == list(range(per_key)), f"{key!r} out of order: {order}"
        arrived = sorted(
            -1 if m.partition is None else m.partition for m in messages if m.body == b"pinned"
        )
        assert arrived == list(pinned), f"pinned messages arrived from partitions {arrived}"

    async def test_acks_levels(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        publisher = await harness.publisher()
        levels = publisher.acks_levels
        assert publisher.default_acks in levels, "the broker's own level is not one it lists"
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(router)
        failures: list[tuple[str, BaseException]] = []
        sent = []
        for level in ACKS_LEVELS:
            if level not in levels:
                with pytest.raises(NotImplementedError, match=level):
                    publisher.with_acks(level)
                continue
            handle_ = publisher.with_acks(level, on_error=lambda t, e: failures.append((t, e)))
            body = f"at-{level}".encode()
            await handle_.publish(topic, body, key=body)
            sent.append(body)
        await inbox.until(lambda items: set(sent) <= set(items), "a message at each level")
        assert not failures, f"failures reported for messages that arrived: {failures}"

        if "none" in levels:
            # Fire-and-forget is not fire-and-ignore: a message no destination takes (the
            # empty topic name) raises at publish, or is reported once the broker says so.
            unconfirmed = publisher.with_acks("none", on_error=lambda t, e: failures.append((t, e)))
            try:
                await unconfirmed.publish("", b"lost")
            except Exception:
                return
            await _eventually(lambda: bool(failures), self.timeout, "the failure reported")
            assert publisher.unconfirmed.count >= 1


async def _eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)  # the broker's answer has no event to wait on here
