"""RabbitMQ drain benchmark: the framework against raw aio-pika and FastStream, in one run.

``python -m bench.rabbitmq_drain [--messages 50000] [--rounds 3]``

Each contestant gets its own fresh durable queue, pre-filled with ``--messages`` JSON
messages of ~80 bytes, then drains it; the rate is measured from the first message handled
to the last (setup excluded for everyone). Rounds run the contestants in rotating order and
the best rate of each is kept, because the machine is shared and noisy.

Contestants (prefetch 256 everywhere, at-least-once: ack after the handler):

* ``framework``: ``BrokerServer`` + ``Router`` on ``RabbitBroker``, a typed pydantic handler
  per message, batched ``multiple=True`` acks where contiguous;
* ``aio-pika ack-each``: ``queue.consume`` callback, ``orjson.loads`` then ``ack()``;
* ``aio-pika multiple/200``: same, ``ack(multiple=True)`` every 200 messages (reference);
* ``faststream``: FastStream 0.7 ``RabbitBroker`` subscriber with a typed pydantic handler
  (default ack policy: ack after the handler), its per-message logging off.

Only 127.0.0.1 is contacted; every loop is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

import aio_pika
import orjson
from pydantic import BaseModel

from bench._util import Drain, best_of_rounds, print_ratios

__all__ = ["main"]

URL = "amqp://guest:guest@127.0.0.1:5672/"
PREFETCH = 256


class Order(BaseModel):
    order_id: int
    amount: float
    currency: str
    customer: str
    sku: str


BODY = orjson.dumps(
    {"order_id": 123456, "amount": 99.5, "currency": "EUR", "customer": "c-42", "sku": "SKU-7"}
)


@dataclass
class Meter:
    """Counts handled messages; records the first and the last."""

    expected: int
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def hit(self) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
        self.count += 1
        if self.count == self.expected:
            self.last = time.perf_counter()
            self.done.set()

    @property
    def rate(self) -> float:
        return (self.count - 1) / (self.last - self.first) if self.last > self.first else 0.0


async def prefill(queue: str, n: int, timeout: float) -> None:
    """Declare ``queue`` (durable) and put ``n`` messages in it, fast (no confirms), then wait
    until the broker reports all of them enqueued."""
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel(publisher_confirms=False)
        await channel.declare_queue(queue, durable=True)
        raw = await channel.get_underlay_channel()
        for _ in range(n):
            await raw.basic_publish(BODY, routing_key=queue)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            declared = await channel.declare_queue(queue, passive=True)
            if (declared.declaration_result.message_count or 0) >= n:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"prefill of {queue} did not complete within {timeout}s")
    finally:
        await connection.close()


async def cleanup(queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def run_raw(n: int, timeout: float, every: int) -> float:
    """aio-pika consumer; ack each message (``every == 1``) or multiple=True every ``every``."""
    queue_name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    await prefill(queue_name, n, timeout)
    meter = Meter(n)
    connection = await aio_pika.connect_robust(URL)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(queue_name)
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            orjson.loads(message.body)
            seen += 1
            if every == 1:
                await message.ack()
            elif seen % every == 0 or seen == n:
                await message.ack(multiple=True)
            meter.hit()

        await queue.consume(on_message)
        await asyncio.wait_for(meter.done.wait(), timeout)
    finally:
        await connection.close()
        await cleanup([queue_name], [])
    return meter.rate


async def run_framework(n: int, timeout: float) -> float:
    from framework.broker import BrokerServer, Router
    from framework.transport.rabbitmq import RabbitBroker

    tag = uuid.uuid4().hex[:8]
    topic = f"bench.{tag}"
    broker = RabbitBroker(
        URL,
        prefetch=PREFETCH,
        exchange=f"bench-{tag}",
        dead_letter_exchange=f"bench-{tag}.dlx",
        delay_exchange=f"bench-{tag}.delay",
    )
    router = Router()
    meter = Meter(n)

    @router.subscriber(topic, group="bench")
    async def on_order(order: Order) -> None:
        meter.hit()

    await prefill(f"bench.{topic}", n, timeout)  # the queue the subscriber will consume
    server = BrokerServer(broker, [router])
    queues: list[str] = []
    try:
        await server.start()
        queues = [q for s in broker.subscriptions for q in s.queues]
        await asyncio.wait_for(meter.done.wait(), timeout)
    finally:
        await server.stop(10)
        await cleanup(queues or [f"bench.{topic}"], [f"bench-{tag}", f"bench-{tag}.dlx"])
    return meter.rate


async def run_faststream(n: int, timeout: float) -> float:
    from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

    queue_name = f"bench.fs.{uuid.uuid4().hex[:8]}"
    await prefill(queue_name, n, timeout)
    meter = Meter(n)
    broker = RabbitBroker(URL, logger=None)

    @broker.subscriber(
        RabbitQueue(queue_name, durable=True), channel=Channel(prefetch_count=PREFETCH)
    )
    async def on_order(order: Order) -> None:
        meter.hit()

    try:
        await broker.start()
        await asyncio.wait_for(meter.done.wait(), timeout)
    finally:
        await broker.stop()
        await cleanup([queue_name], [])
    return meter.rate


CONTESTANTS: dict[str, Drain] = {
    "framework": run_framework,
    "aio-pika ack-each": lambda n, t: run_raw(n, t, 1),
    "aio-pika multiple/200": lambda n, t: run_raw(n, t, 200),
    "faststream 0.7": run_faststream,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="per drain/prefill (s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"RabbitMQ drain: {args.messages} messages of {len(BODY)} bytes, prefetch {PREFETCH}")
    best = asyncio.run(best_of_rounds(CONTESTANTS, args.messages, args.rounds, args.timeout))
    print_ratios(best, args.rounds, "aio-pika ack-each", "faststream 0.7")


if __name__ == "__main__":
    main()
