"""Back-pressure is per partition on a real Kafka-protocol broker (Tansu), issue 8 item 3: a
partition whose handler is blocked, with a backlog larger than the fetch buffer, never stops
the other partitions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from framework.broker import BrokerServer, Message, Router
from framework.transport.kafka import KafkaBroker, KafkaSubscription
from framework.transport.kafka.tansu import FAST_JOIN
from tests.kafka.conftest import Waiter, create_topic

pytestmark = pytest.mark.kafka

BACKLOG = 4_100  # more than the default max_buffered (4,000)


async def produce(bootstrap: str, topic: str, partition: int, count: int, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic, json.dumps({"p": partition, "n": n}).encode(), key=key, partition=partition
            )
            for n in range(count)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@pytest.mark.parametrize(
    ("partitions", "concurrency", "ordering"),
    [
        (2, 2, "auto"),  # the case: default options
        (3, 2, "partition"),  # partitions 0 and 2 used to share a worker
        (2, 4, "key"),  # one blocked key holds one worker, not the partition's others
    ],
)
async def test_item3_a_blocked_partition_does_not_stop_the_others(
    partitions: int,
    concurrency: int,
    ordering: str,
    bootstrap: str,
    unique: Callable[[str], str],
) -> None:
    topic = unique("slow")
    await create_topic(bootstrap, topic, partitions)
    release = asyncio.Event()
    blocked = asyncio.Event()
    others = Waiter()
    router = Router()

    @router.subscriber(
        topic, group=unique("g"), concurrency=concurrency, ordering=ordering
    )
    async def handle(message: Message) -> None:
        if message.partition == 0:
            blocked.set()
            await release.wait()  # a handler stuck on partition 0
        else:
            others.add()

    await produce(bootstrap, topic, 0, BACKLOG, key=b"stuck")
    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        async with asyncio.timeout(15):
            await blocked.wait()
        expected = 0
        for partition in range(1, partitions):
            await produce(bootstrap, topic, partition, 20, key=b"free-%d" % partition)
            expected += 20
        await others.wait_for(expected, timeout=10)
        # The blocked partition alone is paused, its buffer bounded.
        [subscription] = [s for s in server._subscriptions if isinstance(s, KafkaSubscription)]
        states = subscription._assignment.partitions
        stuck = next(state for tp, state in states.items() if tp.partition == 0)
        assert stuck.paused and stuck.buffered <= 4_000 + 1_000  # max_buffered + max_records
        assert not any(state.paused for tp, state in states.items() if tp.partition != 0)
    finally:
        release.set()
        await server.stop(5)
