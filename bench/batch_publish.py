"""Batching-publisher throughput per broker against that broker's raw pipelined publish.

``python -m bench.batch_publish [--brokers kafka,rabbitmq,nats,redis,mqtt] [--messages 20000]
[--rounds 3] [--keys 100] [--chunk 1000]``

For each broker, in the same run, two contestants publish ``--messages`` JSON messages of
~80 bytes with ``--keys`` distinct keys, every message confirmed by the broker, and the
rate is measured from the first publish to the last confirmation (connections and topics
set up before, not timed). Rounds run the contestants in rotating order and the best rate
of each is kept, because the machine is shared and noisy.

* ``framework``: ``broker.batch_publisher(chunk_size=--chunk)``: ``submit`` each message,
  then gather the futures (what the outbox relay does);
* ``raw``: the client library pipelining by hand, with the same confirmation:
  - kafka: aiokafka ``send`` without awaiting each (``acks="all"``), gather the futures;
  - rabbitmq: aio-pika on a confirm-mode channel, ``exchange.publish`` (persistent,
    mandatory, the key in a header) as tasks in a sliding window, gathered;
  - nats: nats-py ``js.publish`` as tasks in a sliding window, gathered (a PubAck each);
  - redis: redis-py pipelines of ``--chunk`` ``XADD`` (no ``MULTI``), one after another;
  - mqtt: aiomqtt ``publish(qos=1)`` as tasks in a sliding window, gathered (a PUBACK each).

  The window (``2 x --chunk``, at least 256 in flight) is the framework's own for these
  brokers: all 20,000 at once, the later publishes run into each client's per-publish
  timeout (aiomqtt's 10 s, the framework's ``publish_timeout``) behind the backlog.

Kafka runs on a Tansu started here; RabbitMQ, NATS (JetStream), Redis and Mosquitto are the
machine's (``PYKRATOS_BENCH_<AMQP|NATS|REDIS|MQTT>_URL`` override the loopback defaults).
Every topic, queue, stream and key made here is removed at the end; every wait is bounded
by ``--timeout``. Target (issue 14): framework >= 1.0x raw on every broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bench._util import best_of_rounds, print_table
from bench.rabbitmq_drain import BODY
from framework.broker.broker import Broker

__all__ = ["main"]

AMQP_URL = os.environ.get("PYKRATOS_BENCH_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = os.environ.get("PYKRATOS_BENCH_NATS_URL") or "nats://127.0.0.1:4222"
REDIS_URL = os.environ.get("PYKRATOS_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"
MQTT_URL = os.environ.get("PYKRATOS_BENCH_MQTT_URL") or "mqtt://127.0.0.1:1883"
BROKERS = ("kafka", "rabbitmq", "nats", "redis", "mqtt")

#: ``run(messages, timeout) -> msg/s``
Contestant = Callable[[int, float], Awaitable[float]]

_QUIET_MQTT = logging.getLogger("bench.batch_publish.aiomqtt")
_QUIET_MQTT.setLevel(logging.ERROR)


class Settings:
    def __init__(self, keys: int, chunk: int) -> None:
        self.keys = [f"k{n}".encode() for n in range(keys)]
        self.chunk = chunk
        #: publishes in flight at once for the raw clients that await one per message: the
        #: framework's pipelined publisher's default window.
        self.window = max(2 * chunk, 256)
        self.tag = uuid.uuid4().hex[:8]

    def key(self, n: int) -> bytes:
        return self.keys[n % len(self.keys)]


async def windowed(publish: Callable[[int], Awaitable[Any]], messages: int, window: int) -> None:
    """``publish(n)`` for every message, at most ``window`` awaiting confirmation at once
    (a sliding window, as the framework's pipelined publisher keeps): all at once, a long
    backlog would run into the client's own per-publish timeout."""
    slots = asyncio.Semaphore(window)

    async def one(n: int) -> None:
        try:
            await publish(n)
        finally:
            slots.release()

    tasks = []
    for n in range(messages):
        await slots.acquire()
        tasks.append(asyncio.ensure_future(one(n)))
    await asyncio.gather(*tasks)


def framework_contestant(broker: Broker, topic: str, settings: Settings) -> Contestant:
    async def run(messages: int, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            publisher = broker.batch_publisher(chunk_size=settings.chunk)
            key = settings.key
            started = time.perf_counter()
            futures = [await publisher.submit(topic, BODY, key=key(n)) for n in range(messages)]
            await asyncio.gather(*futures)
            elapsed = time.perf_counter() - started
            await publisher.close()
        return messages / elapsed

    return run


# -- per broker: (framework broker, raw contestant), cleaned up on exit ------------------------


@contextlib.asynccontextmanager
async def kafka_setup(settings: Settings, servers: str) -> AsyncIterator[tuple[Broker, Any]]:
    from aiokafka import AIOKafkaProducer

    from framework.transport.kafka import KafkaBroker, KafkaOptions
    from framework.transport.kafka.tansu import FAST_JOIN

    options = KafkaOptions()
    topic = f"bench-batch-{settings.tag}"
    # FAST_JOIN only shortens group joins (none here): the producer side is unchanged.
    broker = KafkaBroker(servers, **FAST_JOIN)
    await broker.connect()
    await broker.publish(topic, b"warm-up")  # creates the topic
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        linger_ms=options.linger_ms,
        max_batch_size=options.max_batch_size,
        max_request_size=options.max_request_size,
    )
    await producer.start()

    async def raw(messages: int, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            key = settings.key
            started = time.perf_counter()
            futures = [await producer.send(topic, BODY, key=key(n)) for n in range(messages)]
            await asyncio.gather(*futures)
            return messages / (time.perf_counter() - started)

    try:
        yield broker, (topic, raw)
    finally:
        await producer.stop()
        await broker.close()


@contextlib.asynccontextmanager
async def rabbitmq_setup(settings: Settings) -> AsyncIterator[tuple[Broker, Any]]:
    import aio_pika

    from framework.transport.rabbitmq import RabbitBroker

    topic = f"bench.batch.{settings.tag}"
    broker = RabbitBroker(AMQP_URL, connection_name=f"bench-batch-{settings.tag}")
    await broker.connect()
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(broker.exchange)
    # A queue for the routing key: both publish as mandatory (an unroutable message fails).
    queue = await channel.declare_queue(f"bench-batch-{settings.tag}", durable=True)
    await queue.bind(exchange, routing_key=topic)

    async def raw(messages: int, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            key = settings.key
            persistent = aio_pika.DeliveryMode.PERSISTENT
            started = time.perf_counter()
            await windowed(
                lambda n: exchange.publish(
                    aio_pika.Message(
                        BODY,
                        delivery_mode=persistent,
                        headers={"x-key": bytearray(key(n))},
                        message_id=uuid.uuid4().hex,
                    ),
                    routing_key=topic,
                    mandatory=True,
                ),
                messages,
                settings.window,
            )
            return messages / (time.perf_counter() - started)

    try:
        yield broker, (topic, raw)
    finally:
        with contextlib.suppress(Exception):
            await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
        await broker.close()


@contextlib.asynccontextmanager
async def nats_setup(settings: Settings) -> AsyncIterator[tuple[Broker, Any]]:
    import nats

    from framework.transport.nats import NatsBroker

    stream = f"bench_batch_{settings.tag}"
    topic = f"bench.batch.{settings.tag}"
    broker = NatsBroker(NATS_URL, stream=stream, name=f"bench-batch-{settings.tag}")
    await broker.connect()
    await broker.publish(topic, b"warm-up")  # makes the stream that captures the subject
    client = await nats.connect(NATS_URL)
    js = client.jetstream()

    async def raw(messages: int, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            key = settings.key
            started = time.perf_counter()
            await windowed(
                lambda n: js.publish(
                    topic,
                    BODY,
                    headers={"Nats-Msg-Id": uuid.uuid4().hex, "x-key": key(n).decode()},
                ),
                messages,
                settings.window,
            )
            return messages / (time.perf_counter() - started)

    try:
        yield broker, (topic, raw)
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()
        await broker.close()


@contextlib.asynccontextmanager
async def redis_setup(settings: Settings) -> AsyncIterator[tuple[Broker, Any]]:
    from redis.asyncio import Redis

    from framework.transport.redis import RedisBroker

    prefix = f"bench-batch:{settings.tag}:"
    topic = "orders"
    broker = RedisBroker(REDIS_URL, key_prefix=prefix)
    await broker.connect()
    client = Redis.from_url(REDIS_URL)
    stream = prefix + topic

    async def raw(messages: int, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            key = settings.key
            chunk = settings.chunk
            started = time.perf_counter()
            for start in range(0, messages, chunk):
                pipe = client.pipeline(transaction=False)
                for n in range(start, min(start + chunk, messages)):
                    pipe.xadd(stream, {b"body": BODY, b"key": key(n)})
                await pipe.execute()
            return messages / (time.perf_counter() - started)

    try:
        yield broker, (topic, raw)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.unlink(*keys)
        await client.aclose()
        await broker.close()


@contextlib.asynccontextmanager
async def mqtt_setup(settings: Settings) -> AsyncIterator[tuple[Broker, Any]]:
    from urllib.parse import urlsplit

    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from framework.transport.mqtt import MqttBroker

    topic = f"bench/batch/{settings.tag}"
    broker = MqttBroker(MQTT_URL, qos=1, client_id=f"bench-batch-{settings.tag}")
    await broker.connect()
    where = urlsplit(MQTT_URL)
    client = aiomqtt.Client(
        where.hostname or "127.0.0.1",
        where.port or 1883,
        identifier=f"bench-batch-raw-{settings.tag}",
        protocol=aiomqtt.ProtocolVersion.V5,
        # aiomqtt logs a line per publish queued beyond its window, and its import resets
        # the "mqtt" logger to WARNING: a logger of our own stays quiet.
        logger=_QUIET_MQTT,
    )
    await client.__aenter__()

    def properties(key: bytes) -> Properties:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [("x-key", key.decode())]
        return props

    async def raw(messages: int, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            key = settings.key
            started = time.perf_counter()
            await windowed(
                lambda n: client.publish(topic, BODY, qos=1, properties=properties(key(n))),
                messages,
                settings.window,
            )
            return messages / (time.perf_counter() - started)

    try:
        yield broker, (topic, raw)
    finally:
        await client.__aexit__(None, None, None)
        await broker.close()


async def bench_broker(
    name: str, setup: Any, messages: int, rounds: int, timeout: float, settings: Settings
) -> tuple[float, float]:
    print(f"\n{name}", flush=True)
    async with setup as (broker, (topic, raw)):
        contestants = {
            f"{name} framework": framework_contestant(broker, topic, settings),
            f"{name} raw": raw,
        }
        best = await best_of_rounds(contestants, messages, rounds, timeout)
    return best[f"{name} framework"], best[f"{name} raw"]


async def run(args: argparse.Namespace, kafka_servers: str | None) -> None:
    settings = Settings(args.keys, args.chunk)
    rows = []
    for name in args.brokers:
        if name == "kafka":
            assert kafka_servers is not None
            setup = kafka_setup(settings, kafka_servers)
        else:
            setup = {"rabbitmq": rabbitmq_setup, "nats": nats_setup, "redis": redis_setup,
                     "mqtt": mqtt_setup}[name](settings)  # fmt: skip
        framework, raw = await bench_broker(
            name, setup, args.messages, args.rounds, args.timeout, settings
        )
        rows.append((name, f"{framework:,.0f}", f"{raw:,.0f}", f"{framework / (raw or 1):.2f}x"))
    print_table(
        f"best of {args.rounds} round(s), {args.messages:,} messages, {args.keys} keys, "
        f"chunk {args.chunk}",
        ("broker", "framework msg/s", "raw msg/s", "framework / raw"),
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default=",".join(BROKERS))
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    args.brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(args.brokers) - set(BROKERS)
    if unknown:
        parser.error(f"unknown broker(s) {sorted(unknown)}; choose from {', '.join(BROKERS)}")
    logging.basicConfig(level=logging.WARNING)
    if "kafka" in args.brokers:
        from framework.transport.kafka.tansu import TansuProcess

        with TansuProcess() as tansu:
            asyncio.run(run(args, tansu.bootstrap_servers))
    else:
        asyncio.run(run(args, None))


if __name__ == "__main__":
    main()
