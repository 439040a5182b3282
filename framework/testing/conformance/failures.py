"""Failure promises: retry count and backoff, dead letters, undecodable messages."""

from __future__ import annotations

import asyncio
import itertools

from framework.broker.message import Message
from framework.broker.policy import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    RetryPolicy,
)
from framework.broker.router import Router
from framework.testing.conformance.base import ConformanceBase, Order
from framework.testing.conformance.harness import Harness

__all__ = ["FailurePromises"]


class FailurePromises(ConformanceBase):
    """Failure promises: retry count and backoff, dead letters, undecodable messages."""

    async def test_retry_backoff(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        policy = RetryPolicy(max_attempts=3, backoff=0.3, multiplier=2.0)
        dead = await self._dead_letters(harness, topic)
        attempts: list[tuple[float, int]] = []
        loop = asyncio.get_running_loop()
        router = Router()

        @router.subscriber(topic, group=harness.group(), retry=policy)
        async def handle(message: Message) -> None:
            attempts.append((loop.time(), message.attempt))
            raise RuntimeError("always fails")

        await harness.serve(router)
        publisher = await harness.publisher()
        await publisher.publish(topic, b"retry me", key=b"k")
        await dead.count(1, "dead letter after the last attempt")
        assert [attempt for _, attempt in attempts] == [1, 2, 3]
        gaps = itertools.pairwise(attempts)
        # backoff * multiplier ** (attempt - 1): 0.3 s, then 0.6 s
        for ((before, _), (after, attempt)), wanted in zip(gaps, (0.3, 0.6), strict=True):
            waited = after - before
            assert waited >= wanted - 0.05, f"attempt {attempt} after {waited:.3f}s < {wanted}s"
            assert waited < wanted + self.timeout / 2, f"attempt {attempt} after {waited:.3f}s"
        assert dead.items[0].headers[DLQ_ATTEMPTS] == "3"

    async def test_dead_letter(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        dead = await self._dead_letters(harness, topic)
        router = Router()

        @router.subscriber(
            topic, group=harness.group(), retry=RetryPolicy(max_attempts=2, backoff=0.05)
        )
        async def handle(message: Message) -> None:
            raise ValueError("cannot pay 7")

        await harness.serve(router)
        publisher = await harness.publisher()
        body = b'{"id": 7}'
        await publisher.publish(topic, body, key=b"order-7", headers={"tenant": "t1"})
        [letter] = await dead.count(1, "dead letter")
        assert letter.body == body
        assert letter.key == b"order-7"
        assert letter.headers["tenant"] == "t1"
        assert letter.headers[DLQ_REASON] == "ValueError: cannot pay 7"
        assert letter.headers[DLQ_ERROR_TYPE] == "ValueError"
        assert letter.headers[DLQ_ORIGINAL_TOPIC] == topic
        assert letter.headers[DLQ_ATTEMPTS] == "2"

    async def test_undecodable(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        dead = await self._dead_letters(harness, topic)
        handled = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group(), retry=RetryPolicy(max_attempts=3))
        async def handle(order: Order) -> None:
            handled.add(order.id)

        await harness.serve(router)
        publisher = await harness.publisher()
        await publisher.publish(topic, b"{not json", key=b"k")
        await publisher.publish(topic, b'{"id": 1}', key=b"k")  # same key: after the bad one
        await handled.count(1, "the message after the undecodable one")
        [letter] = await dead.count(1, "dead letter")
        assert handled.items == [1]
        assert letter.body == b"{not json"
        assert letter.headers[DLQ_REASON].startswith("decode: "), letter.headers
        assert letter.headers[DLQ_ERROR_TYPE] == "DecodeError"
        assert letter.headers[DLQ_ATTEMPTS] == "1"
