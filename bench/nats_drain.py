"""NATS JetStream drain benchmark: the framework against raw nats-py and FastStream, in one run.

``python -m bench.nats_drain [--messages 50000] [--rounds 3] [--url nats://127.0.0.1:4222]``

Each contestant gets its own fresh stream (memory storage) and subject, pre-filled with
``--messages`` JSON messages of ~80 bytes, then drains it through a durable pull consumer
with explicit acks; the rate is measured from the first message handled to the last (setup
excluded for everyone). Rounds run the contestants in rotating order and the best rate of
each is kept, because the machine is shared and noisy.

Contestants (at-least-once: each message acked after its handler):

* ``framework``: ``BrokerServer`` + ``Router`` on ``NatsBroker``, a typed pydantic handler
  per message (pull batches of 256, up to 512 unsettled, ``+ACK`` per message);
* ``nats-py ack-each``: ``fetch(256)``, ``orjson.loads`` then ``ack()`` per message (the
  target baseline);
* ``nats-py pydantic``: the same loop decoding into the handler's pydantic model;
* ``faststream``: FastStream 0.7 ``NatsBroker`` pull subscriber (``PullSub(256)``) with a
  typed pydantic handler (default ack policy: ack after the handler), its logging off.

Only the given NATS server is contacted; every loop is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from bench._util import print_table
from bench.rabbitmq_drain import BODY, Meter, Order

__all__ = ["main"]

BATCH = 256
URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class Target:
    """A stream and subject of one contestant."""

    stream: str
    subject: str

    @classmethod
    def new(cls, who: str) -> Target:
        tag = uuid.uuid4().hex[:8]
        return cls(f"bench_{who}_{tag}", f"bench.{who}.{tag}")


async def prefill(url: str, target: Target, n: int, timeout: float) -> None:
    """Create the stream and put ``n`` messages in it (core publishes, pipelined), then wait
    until the stream holds all of them."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await js.add_stream(
            StreamConfig(name=target.stream, subjects=[target.subject], storage=StorageType.MEMORY)
        )
        for i in range(n):
            await client.publish(target.subject, BODY)
            if i % 1000 == 999:
                await client.flush()
        await client.flush()
        deadline = time.monotonic() + timeout
        while (await js.stream_info(target.stream)).state.messages < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prefill of {target.stream} did not complete in {timeout}s")
            await asyncio.sleep(0.05)
    finally:
        await client.close()


async def cleanup(url: str, target: Target) -> None:
    client = await nats.connect(url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(target.stream)
    finally:
        await client.close()


async def run_raw(url: str, n: int, timeout: float, typed: bool) -> float:
    """nats-py pull loop: fetch 256, decode, ack each message."""
    target = Target.new("raw")
    await prefill(url, target, n, timeout)
    meter = Meter(n)
    client = await nats.connect(url)
    decode: Callable[[bytes], object] = Order.model_validate_json if typed else orjson.loads
    try:
        js = client.jetstream()
        pull = await js.pull_subscribe(
            target.subject,
            durable="raw",
            stream=target.stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000),
        )

        async def drain() -> None:
            while meter.count < n:
                try:
                    msgs = await pull.fetch(BATCH, timeout=1.0)
                except TimeoutError:
                    continue
                for msg in msgs:
                    decode(msg.data)
                    await msg.ack()
                    meter.hit()

        await asyncio.wait_for(drain(), timeout)
    finally:
        await client.close()
        await cleanup(url, target)
    return meter.rate


async def run_framework(url: str, n: int, timeout: float) -> float:
    from framework.broker import BrokerServer, Router
    from framework.transport.nats import NatsBroker

    target = Target.new("fw")
    await prefill(url, target, n, timeout)
    meter = Meter(n)
    router = Router()

    @router.subscriber(target.subject, group="bench")
    async def on_order(order: Order) -> None:
        meter.hit()

    # Its stream gets the dead-letter subject too (create_streams, on by default).
    broker = NatsBroker(url, stream=target.stream, fetch_batch=BATCH)
    server = BrokerServer(broker, [router])
    try:
        await server.start()
        await asyncio.wait_for(meter.done.wait(), timeout)
    finally:
        await server.stop(10)
        await cleanup(url, target)
    return meter.rate


async def run_faststream(url: str, n: int, timeout: float) -> float:
    from faststream.nats import JStream, NatsBroker, PullSub

    target = Target.new("fs")
    await prefill(url, target, n, timeout)
    meter = Meter(n)
    broker = NatsBroker(url, logger=None)

    @broker.subscriber(
        target.subject,
        stream=JStream(target.stream, declare=False),
        durable="fs",
        pull_sub=PullSub(batch_size=BATCH, timeout=1.0),
    )
    async def on_order(order: Order) -> None:
        meter.hit()

    try:
        await broker.start()
        await asyncio.wait_for(meter.done.wait(), timeout)
    finally:
        await broker.stop()
        await cleanup(url, target)
    return meter.rate


Contestant = Callable[[str, int, float], Awaitable[float]]
CONTESTANTS: dict[str, Contestant] = {
    "framework": run_framework,
    "nats-py ack-each": lambda u, n, t: run_raw(u, n, t, typed=False),
    "nats-py pydantic": lambda u, n, t: run_raw(u, n, t, typed=True),
    "faststream 0.7": run_faststream,
}


async def run(url: str, messages: int, rounds: int, timeout: float) -> dict[str, float]:
    best: dict[str, float] = dict.fromkeys(CONTESTANTS, 0.0)
    names = list(CONTESTANTS)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            rate = await CONTESTANTS[name](url, messages, timeout)
            print(f"  round {r + 1}: {name:<22} {rate:>9,.0f} msg/s", flush=True)
            best[name] = max(best[name], rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=URL, help="NATS server with JetStream")
    parser.add_argument("--timeout", type=float, default=120.0, help="per drain/prefill (s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"NATS JetStream drain: {args.messages} messages of {len(BODY)} bytes, pull {BATCH}")
    best = asyncio.run(run(args.url, args.messages, args.rounds, args.timeout))
    ack_each = best["nats-py ack-each"] or 1.0
    fast = best["faststream 0.7"] or 1.0
    rows = [
        (name, f"{rate:,.0f}", f"{rate / ack_each:.2f}x", f"{rate / fast:.2f}x")
        for name, rate in best.items()
    ]
    print_table(
        f"best of {args.rounds} round(s)",
        ("contestant", "msg/s", "vs ack-each", "vs faststream"),
        rows,
    )


if __name__ == "__main__":
    main()
