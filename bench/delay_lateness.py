"""Delay lateness: how late delayed messages arrive on Kafka (Tansu), NATS and Redis.

``python -m bench.delay_lateness [--rate 1000] [--seconds 5] [--delay 1.0] [--spread 1.0]
[--brokers kafka,nats,redis]``

For each broker, a publisher broker publishes ``--rate`` messages per second for
``--seconds`` seconds, each with ``deliver_at`` = now + ``--delay`` + a uniform random part
of up to ``--spread`` seconds (so delays interleave: a later-due message is often published
before an earlier-due one). A ``BrokerServer`` on another broker of the same backend
subscribes; its broker runs the delay relay / schedule mover. Each message carries its due
time; the handler records ``arrival - due`` (the lateness). Printed: lateness p50 / p99 /
max and the count of early arrivals (must be 0), next to the same broker's end-to-end
latency for immediate messages at the same rate in the same run (the reference: what the
broker takes anyway), and the ratio of the two p99s. The target is a lateness p99 <= 100 ms.

Kafka runs on a Tansu started here, its consumers (the subscriber and the delay relay) with
``fetch_max_wait_ms`` 20 (``--kafka-fetch-wait-ms``): Tansu holds a fetch for all of that
wait even when records arrive meanwhile, where Kafka answers at once, so with the framework's
100 ms default the wait, not the delay mechanism, sets the p99 (both columns alike). NATS
and Redis use the machine's servers (``PYKRATOS_BENCH_NATS_URL``,
``PYKRATOS_BENCH_REDIS_URL``), under names of their own that are deleted afterwards.
Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from framework.broker import Broker, BrokerServer, Message, Router
from framework.transport.kafka.tansu import SHORT_FETCH_WAIT

__all__ = ["main"]

NATS_URL = os.environ.get("PYKRATOS_BENCH_NATS_URL") or "nats://127.0.0.1:4222"
REDIS_URL = os.environ.get("PYKRATOS_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"
#: Publishes in flight at once (each awaits the broker's confirmation).
IN_FLIGHT = 64


@dataclass
class Figures:
    """Lateness (delayed) or latency (immediate) of one run, in seconds."""

    samples: list[float]
    sent: int

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(int(len(ordered) * p), len(ordered) - 1)]


BrokerFactory = Callable[[str], Broker]


@contextlib.asynccontextmanager
async def kafka_setup(
    tag: str, args: argparse.Namespace
) -> AsyncIterator[tuple[BrokerFactory, str]]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from framework.transport.kafka import KafkaBroker
    from framework.transport.kafka.tansu import FAST_JOIN, TansuProcess

    with TansuProcess() as tansu:
        topic = f"bench-delay-{tag}"
        admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()

        def make(name: str) -> Broker:
            return KafkaBroker(
                tansu.bootstrap_servers,
                client_id=name,
                delay_topic_prefix=f"bench-delay-{tag}",
                delay_check_interval=0.2,
                fetch_max_wait_ms=args.kafka_fetch_wait_ms,
                **FAST_JOIN,
            )

        yield make, topic


@contextlib.asynccontextmanager
async def nats_setup(
    tag: str, args: argparse.Namespace
) -> AsyncIterator[tuple[BrokerFactory, str]]:
    import nats

    from framework.transport.nats import NatsBroker

    stream = f"bench_delay_{tag}"

    def make(name: str) -> Broker:
        return NatsBroker(NATS_URL, stream=stream, storage="memory", name=name)

    try:
        yield make, f"bench.delay.{tag}"
    finally:
        client = await nats.connect(NATS_URL)
        try:
            for name in (stream, f"{stream}-delay"):
                with contextlib.suppress(Exception):
                    await client.jetstream().delete_stream(name)
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def redis_setup(
    tag: str, args: argparse.Namespace
) -> AsyncIterator[tuple[BrokerFactory, str]]:
    from redis.asyncio import Redis

    from framework.transport.redis import RedisBroker

    prefix = f"pykratos-bench:{tag}:"

    def make(name: str) -> Broker:
        return RedisBroker(REDIS_URL, key_prefix=prefix, client_name=f"bench-{name}")

    try:
        yield make, "delay"
    finally:
        admin = Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in admin.scan_iter(match=f"{prefix}*")]
            if keys:
                await admin.unlink(*keys)
        finally:
            await admin.aclose()


SETUPS = {"kafka": kafka_setup, "nats": nats_setup, "redis": redis_setup}


async def run_one(
    publisher: Broker,
    topic: str,
    inbox: dict[int, float],
    *,
    rate: float,
    seconds: float,
    delay: float,
    spread: float,
    run: int,
) -> Figures:
    """Publish at ``rate`` for ``seconds``; delayed if ``delay`` > 0; return the figures."""
    count = int(rate * seconds)
    rng = random.Random(run)
    dues: dict[int, float] = {}
    gate = asyncio.Semaphore(IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def send(seq: int, due: float) -> None:
        body = f"{run}:{seq}".encode()
        try:
            if delay > 0:
                await publisher.publish(topic, body, deliver_at=datetime.fromtimestamp(due, UTC))
            else:
                await publisher.publish(topic, body)
        finally:
            gate.release()

    started = time.monotonic()
    for seq in range(count):
        pause = started + seq / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        await gate.acquire()
        due = time.time() + (delay + rng.uniform(0, spread) if delay > 0 else 0.0)
        dues[seq] = due
        task = asyncio.create_task(send(seq, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    late_by = delay + spread + 30.0
    deadline = time.monotonic() + late_by
    key_base = run * 10_000_000
    while time.monotonic() < deadline:
        if all(key_base + seq in inbox for seq in range(count)):
            break
        await asyncio.sleep(0.05)
    samples = [inbox[key_base + seq] - due for seq, due in dues.items() if key_base + seq in inbox]
    return Figures(samples, count)


async def bench_broker(name: str, args: argparse.Namespace) -> list[object]:
    tag = uuid.uuid4().hex[:8]
    async with SETUPS[name](tag, args) as (make, topic):
        inbox: dict[int, float] = {}
        arrived = asyncio.Event()
        router = Router()

        @router.subscriber(topic, group=f"bench-{tag}")
        async def handle(message: Message) -> None:
            run, seq = message.body.decode().split(":")
            inbox[int(run) * 10_000_000 + int(seq)] = time.time()
            arrived.set()

        server = BrokerServer(make(f"server-{tag}"), [router], name="bench")
        await server.start()
        publisher = make(f"publisher-{tag}")
        await publisher.connect()
        try:
            # Warm-up: the first delayed publish creates the delay topics/stream and the
            # server's relay starts; wait until a delayed message made it through.
            await publisher.publish(topic, b"0:0", delay=0.2)
            async with asyncio.timeout(60):
                while 0 not in inbox:
                    arrived.clear()
                    await arrived.wait()
            immediate = await run_one(
                publisher,
                topic,
                inbox,
                rate=args.rate,
                seconds=args.seconds,
                delay=0.0,
                spread=0.0,
                run=1,
            )
            delayed = await run_one(
                publisher,
                topic,
                inbox,
                rate=args.rate,
                seconds=args.seconds,
                delay=args.delay,
                spread=args.spread,
                run=2,
            )
        finally:
            await publisher.close()
            await server.stop(5)
    ms = 1000.0
    early = sum(1 for s in delayed.samples if s < 0)
    return [
        name,
        f"{len(delayed.samples)}/{delayed.sent}",
        f"{delayed.pct(0.5) * ms:.1f}",
        f"{delayed.pct(0.99) * ms:.1f}",
        f"{max(delayed.samples) * ms:.1f}",
        early,
        f"{immediate.pct(0.5) * ms:.1f}",
        f"{immediate.pct(0.99) * ms:.1f}",
        f"{delayed.pct(0.99) / max(immediate.pct(0.99), 1e-6):.2f}x",
    ]


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    for name in args.brokers.split(","):
        rows.append(await bench_broker(name.strip(), args))
    header: list[object] = [
        "broker",
        "delivered",
        "late p50 ms",
        "late p99 ms",
        "late max ms",
        "early",
        "immediate p50 ms",
        "immediate p99 ms",
        "p99 late/immediate",
    ]
    print(
        f"\ndelay lateness: {args.rate:g} msg/s for {args.seconds:g}s, deliver_at = now + "
        f"{args.delay:g}s + U(0, {args.spread:g})s (target: late p99 <= 100 ms); Kafka "
        f"consumers' fetch_max_wait_ms {args.kafka_fetch_wait_ms}"
    )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--brokers", default="kafka,nats,redis")
    parser.add_argument(
        "--kafka-fetch-wait-ms",
        type=int,
        default=SHORT_FETCH_WAIT["fetch_max_wait_ms"],
        help="the Kafka consumers' fetch_max_wait_ms (default %(default)s: Tansu holds a fetch "
        "for all of it even when records arrive, so it adds to every delivery there; see "
        "framework.transport.kafka.tansu.SHORT_FETCH_WAIT). 100 is the framework default.",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
