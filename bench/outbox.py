"""Outbox relay benchmark on PostgreSQL + Kafka (Tansu), one run.

Run from the repo root::

    python -m bench.outbox --messages 20000 --seconds 5

(starts its own Tansu on a free loopback port; PostgreSQL from
``PYKRATOS_BENCH_POSTGRES_URL``, default the machine's
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``; works in a schema of its own that it
drops at the end).

Throughput: ``--messages`` JSON messages (~80 bytes, ``--keys`` distinct keys), ``--repeat``
interleaved runs of each contender (default 3); the medians are compared, since a shared
machine's load drifts during a run:

* **batching publisher, same records**: the framework's own Kafka ``batch_publisher``
  (``submit`` futures gathered, ``acks="all"``) sending the records the relay sends (body,
  key and a ``message-id`` header each): the broker-side ceiling, the 1.00x;
* **batching publisher, records without headers**: the same without the header (the
  column "vs no headers" divides by it);
* **outbox relay**: the same messages committed to the outbox first (not timed), then an
  ``OutboxRelay`` drains them: claim, publish with confirmation, mark; timed from its start
  to the last round committed (msgs/s from commit to broker confirmation). Twice: with a
  retention (the default: each confirmed row is moved from ``outbox`` to ``outbox_sent``,
  where sent rows are kept until the retention's clean-up) and with ``retention=0``
  (confirmed rows are deleted).

Latency: a writer process commits ``--per-commit`` messages per transaction (default 10) at a
steady ``--rate`` msgs/s for ``--seconds``; for each message, the time from its commit
returning to the broker confirming the relay's publish (through the batching publisher, as
the relay publishes). The relay is woken only by PostgreSQL ``LISTEN/NOTIFY`` (not by the
in-process wake-up, so this is what another replica would see); p50/p99 are printed. Both
figures depend on the machine's load: report them with it (``uptime``).
Targets (issue 9): relay >= 0.5x the batching publisher, p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from framework.broker import MESSAGE_ID, Broker, PublishResult
from framework.broker.subscriber import SubscriberSpec
from framework.data import OutboxRelay, TransactionalOutbox, metadata
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.tansu import FAST_JOIN, TansuProcess

from ._util import print_table

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TIMEOUT = 300.0


def payload(n: int) -> dict[str, Any]:
    return {"id": n, "user": f"u{n % 997}", "amount": 12.5, "currency": "EUR", "paid": True}


class ConfirmClock(Broker):
    """Passes publishes to ``inner`` and notes when each one was confirmed, by message-id."""

    kind = "kafka"

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.confirmed: dict[str, float] = {}

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> PublishResult:
        result = await self.inner.publish(topic, body, key=key, headers=headers, **options)
        if headers is not None:
            self.confirmed[headers[MESSAGE_ID]] = time.time()
        return result

    async def subscribe(self, spec: SubscriberSpec, processor: Any) -> Any:
        raise NotImplementedError

    @property
    def options(self) -> Any:
        return getattr(self.inner, "options", None)

    def batch_publisher(self, **options: Any) -> Any:
        """The inner broker's batching publisher, timing each confirmation (the relay's
        path for every round)."""
        return ClockedBatcher(self.inner.batch_publisher(**options), self.confirmed)


class ClockedBatcher:
    """A batching publisher noting when each message was confirmed, by message-id."""

    def __init__(self, inner: Any, confirmed: dict[str, float]) -> None:
        self.inner = inner
        self.confirmed = confirmed

    @property
    def closed(self) -> bool:
        """The inner publisher's (the relay replaces a closed one)."""
        return bool(self.inner.closed)

    async def submit(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> asyncio.Future[PublishResult]:
        future: asyncio.Future[PublishResult] = await self.inner.submit(
            topic, body, key=key, headers=headers
        )
        if headers is not None:
            message_id = headers[MESSAGE_ID]

            def note(done: asyncio.Future[PublishResult]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self.confirmed[message_id] = time.time()

            future.add_done_callback(note)
        return future

    async def flush(self) -> None:
        await self.inner.flush()

    async def close(self) -> None:
        await self.inner.close()


async def batching_publisher(servers: str, count: int, keys: int, message_ids: bool) -> float:
    """Publish the messages straight through the batching publisher; with ``message_ids``,
    each with its own ``message-id`` header, like the records the relay sends."""
    kafka = KafkaBroker(servers, **FAST_JOIN)
    await kafka.connect()
    topic = f"bench-batch-{uuid.uuid4().hex[:8]}"
    await kafka.publish(topic, b"warm-up")
    try:
        publisher = kafka.batch_publisher()
        bodies = [json.dumps(payload(n)).encode() for n in range(count)]
        headers = [{MESSAGE_ID: uuid.uuid4().hex} if message_ids else None for _ in bodies]
        started = time.perf_counter()
        futures = [
            await publisher.submit(topic, body, key=f"k{n % keys}".encode(), headers=headers[n])
            for n, body in enumerate(bodies)
        ]
        await asyncio.gather(*futures)
        return count / (time.perf_counter() - started)
    finally:
        await kafka.close()


async def relay_throughput(
    engine: AsyncEngine,
    servers: str,
    count: int,
    keys: int,
    batch_size: int,
    round_batches: int,
    concurrency: int,
    pipeline: bool,
    retention: float,
) -> float:
    topic = f"bench-relay-{uuid.uuid4().hex[:8]}"
    uow = TransactionalOutbox(async_sessionmaker(engine))
    for start in range(0, count, 1000):  # prefill, not timed
        async with uow.begin() as tx:
            for n in range(start, min(start + 1000, count)):
                tx.add_message(topic, payload(n), key=f"k{n % keys}")
    kafka = KafkaBroker(servers, **FAST_JOIN)
    await kafka.connect()
    await kafka.publish(topic, b"warm-up")
    relay = OutboxRelay(
        engine,
        kafka,
        batch_size=batch_size,
        round_batches=round_batches,
        listen=False,
        concurrency=concurrency,
        pipeline=pipeline,
        retention=retention,
    )
    try:
        started = time.perf_counter()
        await relay.start()
        async with asyncio.timeout(TIMEOUT):
            while relay.sent < count:  # noqa: ASYNC110 - a counter of the relay's task
                await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        await relay.stop(10)
        assert relay.sent == count, (relay.sent, count)
        return count / elapsed
    finally:
        await kafka.close()


async def write_steadily(
    url: str, schema: str, topic: str, rate: float, seconds: float, per_commit: int, out: str
) -> None:
    """The writer process: commit at ``rate`` msgs/s; write message-id -> commit time
    (``time.time()``, after the commit returned) as JSON to ``out``."""
    engine = create_async_engine(
        url, connect_args={"server_settings": {"search_path": schema}}, pool_size=20
    )
    writer = TransactionalOutbox(async_sessionmaker(engine))
    committed: dict[str, float] = {}

    async def commit(first: int) -> None:
        async with writer.begin() as tx:
            ids = [
                tx.add_message(topic, payload(n), key=f"k{n % 1000}")
                for n in range(first, first + per_commit)
            ]
        committed.update(dict.fromkeys(ids, time.time()))

    commits = int(rate * seconds) // per_commit
    started = time.perf_counter()
    tasks = []
    for c in range(commits):
        delay = started + c * per_commit / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(commit(c * per_commit)))
    await asyncio.gather(*tasks)
    offered = commits * per_commit / (time.perf_counter() - started)
    await engine.dispose()
    with open(out, "w") as file:  # noqa: ASYNC230 - once, after the timing
        json.dump({"offered": offered, "committed": committed}, file)


async def steady_latency(
    engine: AsyncEngine,
    url: str,
    schema: str,
    servers: str,
    args: argparse.Namespace,
) -> list[float]:
    """Run the writer in another process (its own CPU), the relay here; the latencies."""
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    kafka = KafkaBroker(servers, **FAST_JOIN)
    clock = ConfirmClock(kafka)
    await clock.connect()
    await kafka.publish(topic, b"warm-up")
    # Woken by NOTIFY only: the writer is another process.
    relay = OutboxRelay(
        engine,
        clock,
        batch_size=args.batch_size,
        round_batches=args.round_batches,
        poll_interval=1.0,
        concurrency=args.concurrency,
        pipeline=args.pipeline,
    )
    await relay.start()
    out = os.path.join(tempfile.mkdtemp(), "committed.json")
    try:
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.outbox", "--write-to", out, "--url", url,
            "--schema", schema, "--topic", topic, "--rate", str(args.rate),
            "--seconds", str(args.seconds), "--per-commit", str(args.per_commit),
        )  # fmt: skip
        assert await writer.wait() == 0, "the writer process failed"
        with open(out) as file:  # noqa: ASYNC230 - once, after the timing
            written = json.load(file)
        committed: dict[str, float] = written["committed"]
        async with asyncio.timeout(TIMEOUT):
            while len(clock.confirmed) < len(committed):  # noqa: ASYNC110 - filled by the relay
                await asyncio.sleep(0.01)
    finally:
        await relay.stop(10)
        await clock.close()
    print(
        f"\nwriter process offered {written['offered']:.0f} msgs/s "
        f"({args.per_commit} per commit) for {args.seconds:g} s"
    )
    return [clock.confirmed[m] - t for m, t in committed.items()]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500, help="relay rows per claim")
    parser.add_argument(
        "--pipeline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="relay through Kafka's batching publisher (default) or publish each message",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved throughput runs")
    parser.add_argument("--round-batches", type=int, default=4, help="relay batches per round")
    parser.add_argument("--concurrency", type=int, default=1, help="relay rounds at once")
    parser.add_argument("--per-commit", type=int, default=10, help="messages per transaction")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    # the writer process of the latency run (internal)
    parser.add_argument("--write-to", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.write_to:
        await write_steadily(
            args.url, args.schema, args.topic, args.rate, args.seconds, args.per_commit,
            args.write_to,
        )  # fmt: skip
        return

    url = os.environ.get("PYKRATOS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    schema = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine = create_async_engine(
        url, connect_args={"server_settings": {"search_path": schema}}, pool_size=20
    )
    tansu = TansuProcess().start()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        servers = tansu.bootstrap_servers
        n, keys = args.messages, args.keys
        # Interleaved repeats, medians compared: a shared machine's load drifts during a run.
        runs: dict[str, list[float]] = {"ids": [], "bare": [], "sent": [], "deleted": []}
        for _ in range(args.repeat):
            runs["ids"].append(await batching_publisher(servers, n, keys, message_ids=True))
            for name, retention in (("sent", 86400.0), ("deleted", 0.0)):
                rate = await relay_throughput(
                    engine, servers, n, keys, args.batch_size, args.round_batches,
                    args.concurrency, args.pipeline, retention,
                )  # fmt: skip
                runs[name].append(rate)
            runs["bare"].append(await batching_publisher(servers, n, keys, message_ids=False))
        median = {name: statistics.median(values) for name, values in runs.items()}

        def row(label: str, name: str) -> list[str]:
            spread = " / ".join(f"{value / 1000:.0f}k" for value in runs[name])
            ratio = median[name] / median["ids"]
            bare = median[name] / median["bare"]
            return [label, f"{median[name]:,.0f}", spread, f"{ratio:.2f}x", f"{bare:.2f}x"]

        shape = f"batch {args.batch_size} x {args.round_batches} per round"
        if args.concurrency > 1:
            shape += f", {args.concurrency} rounds at once"
        print_table(
            f"Throughput, {n} messages, {keys} keys, acks=all (PostgreSQL + Tansu), "
            f"median of {args.repeat} interleaved runs",
            ["contender", "msgs/s", "runs", "ratio", "vs no headers"],
            [
                row("batching publisher, same records (message-id header)", "ids"),
                row("batching publisher, records without headers", "bare"),
                row(f"outbox relay, rows moved to outbox_sent (retention > 0; {shape})", "sent"),
                row(f"outbox relay, rows deleted (retention 0; {shape})", "deleted"),
            ],
        )
        latencies = await steady_latency(engine, url, schema, servers, args)
        print_table(
            f"Commit -> broker confirmation at {args.rate:g} msgs/s (LISTEN/NOTIFY)",
            ["messages", "p50 ms", "p99 ms", "max ms"],
            [
                [
                    len(latencies),
                    f"{percentile(latencies, 0.5) * 1000:.1f}",
                    f"{percentile(latencies, 0.99) * 1000:.1f}",
                    f"{max(latencies) * 1000:.1f}",
                ]
            ],
        )
    finally:
        tansu.stop()
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.dispose()


if __name__ == "__main__":
    asyncio.run(main())
