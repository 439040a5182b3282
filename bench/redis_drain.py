"""Redis Streams drain benchmark: the framework against raw redis-py and FastStream, in one run.

``python -m bench.redis_drain [--messages 50000] [--rounds 3]``

Each contestant gets its own fresh stream (``pykratos-bench:<id>:...``, deleted afterwards)
with a consumer group created at ``0``, pre-filled with ``--messages`` JSON messages of ~80
bytes (pipelined ``XADD``), then drains it through the group; the rate is measured from the
first message handled to the last (setup excluded for everyone). Rounds run the contestants in
rotating order and the best rate of each is kept, because the machine is shared and noisy.

Contestants (``COUNT 256`` per read everywhere, at-least-once: acknowledged after the handler):

* ``framework``: ``BrokerServer`` + ``Router`` on ``RedisBroker``, a typed pydantic handler
  per message, the ``XACK`` of each read's finished entries pipelined with the next read;
* ``redis-py ack-each``: ``XREADGROUP`` loop, ``orjson.loads`` then ``XACK`` per message;
* ``redis-py ack/batch``: same, one ``XACK`` per read (reference);
* ``faststream``: FastStream 0.7 ``RedisBroker`` stream subscriber (group, ``max_records``
  256) with a typed pydantic handler (default ack policy: ``XACK`` after the handler), its
  per-message logging off. Its entries are pre-filled in FastStream's own binary format.

Only the local Redis is contacted (``PYKRATOS_BENCH_REDIS_URL``, default
``redis://127.0.0.1:6379/0``); every loop is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

from bench._util import Drain, best_of_rounds, print_ratios
from bench.rabbitmq_drain import BODY, Meter, Order

__all__ = ["main"]

URL = os.environ.get("PYKRATOS_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"
COUNT = 256
GROUP = "bench"


def stream_name(who: str) -> str:
    return f"pykratos-bench:{uuid.uuid4().hex[:8]}:{who}"


async def prefill(stream: str, n: int, fields: dict[bytes, bytes]) -> None:
    """Create ``GROUP`` at ``0`` on a new ``stream`` and append ``n`` entries (pipelined)."""
    client = Redis.from_url(URL)
    try:
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for start in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(1000, n - start)):
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            await pipe.execute()
    finally:
        await client.aclose()


async def cleanup(stream: str) -> None:
    client = Redis.from_url(URL)
    try:
        await client.unlink(stream, f"{stream}.dlq")
    finally:
        await client.aclose()


async def run_raw(n: int, timeout: float, ack_each: bool) -> float:
    """``XREADGROUP`` loop; ``XACK`` each message, or one ``XACK`` per read."""
    stream = stream_name("raw")
    await prefill(stream, n, {b"body": BODY})
    meter = Meter(n)
    client = Redis.from_url(URL)

    async def drain() -> None:
        while meter.count < n:
            # redis-py types a reply as every RESP2/RESP3 shape at once: it is RESP2's here.
            reply: Any = await client.xreadgroup(
                GROUP, "c1", {stream: ">"}, count=COUNT, block=1000
            )
            if not reply:
                continue
            entries = reply[0][1]
            for entry_id, fields in entries:
                orjson.loads(fields[b"body"])
                if ack_each:
                    await client.xack(stream, GROUP, entry_id)
                meter.hit()
            if not ack_each:
                await client.xack(stream, GROUP, *(entry_id for entry_id, _ in entries))

    try:
        await asyncio.wait_for(drain(), timeout)
    finally:
        await client.aclose()
        await cleanup(stream)
    return meter.rate


async def run_framework(n: int, timeout: float) -> float:
    from framework.broker import BrokerServer, Router
    from framework.transport.redis import RedisBroker

    stream = stream_name("framework")
    await prefill(stream, n, {b"body": BODY})
    meter = Meter(n)
    router = Router()

    @router.subscriber(stream, group=GROUP)
    async def on_order(order: Order) -> None:
        meter.hit()

    server = BrokerServer(RedisBroker(URL, read_count=COUNT), [router])
    try:
        await server.start()
        await asyncio.wait_for(meter.done.wait(), timeout)
    finally:
        await server.stop(10)
        await cleanup(stream)
    return meter.rate


async def run_faststream(n: int, timeout: float) -> float:
    from faststream.redis import RedisBroker, StreamSub
    from faststream.redis.message import DATA_KEY
    from faststream.redis.parser.binary import BinaryMessageFormatV1

    stream = stream_name("faststream")
    data = await BinaryMessageFormatV1.encode(
        message=orjson.loads(BODY), reply_to=None, headers=None, correlation_id=uuid.uuid4().hex
    )
    await prefill(stream, n, {DATA_KEY.encode(): data})
    meter = Meter(n)
    # None turns faststream's logging off (its hint says a logger is required).
    broker = RedisBroker(URL, logger=None)  # type: ignore[arg-type]

    @broker.subscriber(stream=StreamSub(stream, group=GROUP, consumer="c1", max_records=COUNT))
    async def on_order(order: Order) -> None:
        meter.hit()

    try:
        await broker.start()
        await asyncio.wait_for(meter.done.wait(), timeout)
    finally:
        await broker.stop()
        await cleanup(stream)
    return meter.rate


CONTESTANTS: dict[str, Drain] = {
    "framework": run_framework,
    "redis-py ack-each": lambda n, t: run_raw(n, t, True),
    "redis-py ack/batch": lambda n, t: run_raw(n, t, False),
    "faststream 0.7": run_faststream,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="per drain (s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"Redis Streams drain: {args.messages} messages of {len(BODY)} bytes, COUNT {COUNT}")
    best = asyncio.run(best_of_rounds(CONTESTANTS, args.messages, args.rounds, args.timeout))
    print_ratios(best, args.rounds, "redis-py ack-each", "faststream 0.7")


if __name__ == "__main__":
    main()
