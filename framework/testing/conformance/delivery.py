"""Delivery promises: groups split, groups fan out, broadcast, per-key order."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from framework.broker.message import Message
from framework.broker.router import Router
from framework.testing.conformance.base import ConformanceBase
from framework.testing.conformance.harness import Harness

__all__ = ["DeliveryPromises"]


class DeliveryPromises(ConformanceBase):
    """Delivery promises: groups split, groups fan out, broadcast, per-key order."""

    async def test_group_split(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, self.partitions)
        seen: dict[str, list[bytes]] = {"a": [], "b": []}
        inbox = harness.inbox()

        def member(name: str) -> Router:
            router = Router()

            @router.subscriber(topic, group=group)
            async def handle(message: Message) -> None:
                seen[name].append(message.body)
                inbox.add(message.body)

            return router

        await harness.serve(member("a"), name="member-a")
        await harness.serve(member("b"), name="member-b")
        publisher = await harness.publisher()

        async def publish_round(prefix: str, count: int) -> set[bytes]:
            bodies = {f"{prefix}-{i}".encode() for i in range(count)}
            for body in sorted(bodies):
                await publisher.publish(topic, body, key=body)
            await inbox.until(lambda items: bodies <= set(items), f"all of {prefix}")
            return bodies

        # A group may still be settling right after its members subscribed (Kafka rebalances
        # when the second member joins): publish until both members are served.
        for attempt in range(20):
            await publish_round(f"warm{attempt}", 8)
            if seen["a"] and seen["b"]:
                break
        assert seen["a"] and seen["b"], f"one member got nothing: {seen}"

        settled = await publish_round("split", 40)
        counts = {
            name: [body for body in bodies if body in settled] for name, bodies in seen.items()
        }
        assert counts["a"] and counts["b"], f"the settled group did not split: {counts}"
        together = counts["a"] + counts["b"]
        assert sorted(together) == sorted(settled), "a message went to both members or none"

    async def test_groups_fan_out(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        got: dict[str, list[bytes]] = defaultdict(list)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group("billing"))
        async def billing(message: Message) -> None:
            got["billing"].append(message.body)
            inbox.add(message.body)

        @router.subscriber(topic, group=harness.group("shipping"))
        async def shipping(message: Message) -> None:
            got["shipping"].append(message.body)
            inbox.add(message.body)

        await harness.serve(router)
        publisher = await harness.publisher()
        bodies = [f"m-{i}".encode() for i in range(20)]
        for body in bodies:
            await publisher.publish(topic, body, key=body)
        await inbox.count(40, "40 deliveries (20 per group)")
        assert sorted(got["billing"]) == sorted(bodies)
        assert sorted(got["shipping"]) == sorted(bodies)

    async def test_broadcast(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        got: dict[str, list[bytes]] = defaultdict(list)
        inbox = harness.inbox()

        def instance(name: str) -> Router:
            router = Router()

            @router.subscriber(topic, broadcast=True)
            async def handle(message: Message) -> None:
                got[name].append(message.body)
                inbox.add(message.body)

            return router

        await harness.serve(instance("one"), name="instance-one")
        await harness.serve(instance("two"), name="instance-two")
        publisher = await harness.publisher()
        bodies = [f"b-{i}".encode() for i in range(10)]
        for body in bodies:
            await publisher.publish(topic, body, key=body)
        await inbox.count(20, "20 deliveries (10 per instance)")
        assert sorted(got["one"]) == sorted(bodies)
        assert sorted(got["two"]) == sorted(bodies)

    async def test_key_order(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        keys = [f"key-{i}" for i in range(6)]
        per_key = 20
        order: dict[str, list[int]] = defaultdict(list)
        gate = asyncio.Event()  # opens once everything is published: a backlog to share
        inbox = harness.inbox()
        in_flight = peak = 0
        jitter = random.Random(4)
        router = Router()

        @router.subscriber(topic, group=harness.group(), concurrency=4)
        async def handle(message: Message) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await gate.wait()
                await asyncio.sleep(jitter.random() * 0.003)  # handlers finish out of order
                key, seq = message.body.decode().split(":")
                order[key].append(int(seq))
            finally:
                in_flight -= 1
            inbox.add(message.body)

        await harness.serve(router)
        publisher = await harness.publisher()
        for seq in range(per_key):
            for key in keys:
                await publisher.publish(topic, f"{key}:{seq}".encode(), key=key.encode())
        gate.set()
        await inbox.count(len(keys) * per_key, "every message")
        assert peak > 1, "the handlers never overlapped: concurrency was not exercised"
        for key in keys:
            assert order[key] == list(range(per_key)), f"{key} out of order: {order[key]}"
