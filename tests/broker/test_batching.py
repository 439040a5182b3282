"""The generic batching publisher (framework.broker.batching) on the memory broker and on
publishers whose confirmations the test controls."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping

import pytest

from framework.broker import BrokerServer, MemoryBroker, Publisher, PublishResult, Router
from framework.broker.batching import (
    BatchFlushTimeoutError,
    BatchingPublisher,
    BatchPublisherClosedError,
    PendingMessage,
    PipelinedPublisher,
)
from framework.broker.broker import Broker, MessageProcessor, Subscription
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec
from tests.broker.helpers import Collector


class GatedPublisher(BatchingPublisher):
    """Confirms nothing until :meth:`confirm_all`; records the chunks it was handed."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.chunks: list[list[PendingMessage]] = []
        self.handed = asyncio.Event()

    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        self.chunks.append(chunk)
        self.handed.set()

    def confirm_all(self) -> None:
        for number, chunk in enumerate(self.chunks):
            for index, item in enumerate(chunk):
                self.resolve(item, PublishResult(item.topic, number, index))


async def _never(
    topic: str,
    body: bytes,
    key: bytes | None,
    headers: Mapping[str, str] | None,
    partition: int | None,
) -> PublishResult:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def test_invalid_sizes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="max_pending >= chunk_size"):
        PipelinedPublisher(_never, chunk_size=10, max_pending=5)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        PipelinedPublisher(_never, chunk_size=0)
    with pytest.raises(ValueError, match="close_timeout"):
        PipelinedPublisher(_never, close_timeout=-1)
    # NaN passes every comparison-based check; non-integral sizes make no chunk.
    for bad in ({"flush_interval": math.nan}, {"flush_interval": math.inf},
                {"chunk_size": 2.5}, {"max_pending": math.inf}, {"max_in_flight": 0},
                {"close_timeout": math.nan}):  # fmt: skip
        [name] = bad
        with pytest.raises(ValueError, match=name):
            PipelinedPublisher(_never, **bad)  # type: ignore[arg-type]


async def test_memory_broker_results_order_and_bound() -> None:
    broker = MemoryBroker(partitions=2)
    await broker.connect()
    try:
        publisher = broker.batch_publisher(chunk_size=8, flush_interval=0.001, max_pending=16)
        futures = []
        most = 0
        for i in range(100):
            futures.append(await publisher.submit("t", str(i).encode(), key=b"k%d" % (i % 3)))
            most = max(most, publisher.pending)
        results = await asyncio.gather(*futures)
        assert most <= 16
        by_partition: dict[int | None, list[int | None]] = {}
        for result in results:
            assert result.topic == "t"
            by_partition.setdefault(result.partition, []).append(result.offset)
        for offsets in by_partition.values():  # submit order is log order, per partition
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        assert publisher.pending == 0
    finally:
        await broker.close()
    assert publisher.closed


async def test_submit_waits_while_max_pending_are_unconfirmed() -> None:
    publisher = GatedPublisher(chunk_size=2, flush_interval=0.001, max_pending=4)
    futures = [await publisher.submit("t", b"%d" % i) for i in range(4)]
    blocked = asyncio.ensure_future(publisher.submit("t", b"5th"))
    done, _ = await asyncio.wait({blocked}, timeout=0.05)
    assert not done, "submit did not wait with max_pending messages unconfirmed"
    publisher.handed.clear()
    publisher.confirm_all()
    fifth = await asyncio.wait_for(blocked, 5)
    assert [f.result().offset for f in futures] == [0, 1, 0, 1]
    await asyncio.wait_for(publisher.handed.wait(), 5)  # the 5th, after flush_interval
    publisher.confirm_all()
    assert (await fifth).topic == "t"
    await publisher.close(1)


async def test_a_refused_message_fails_alone() -> None:
    async def send(
        topic: str,
        body: bytes,
        key: bytes | None,
        headers: Mapping[str, str] | None,
        partition: int | None,
    ) -> PublishResult:
        if topic == "bad":
            raise ValueError("bad topic")
        return PublishResult(topic, None, None, body.decode())

    async with PipelinedPublisher(send, chunk_size=5) as publisher:
        futures = [await publisher.submit("bad" if i == 2 else "t", b"%d" % i) for i in range(5)]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(outcomes[2], ValueError)
    assert [o.message_id for o in outcomes if isinstance(o, PublishResult)] == ["0", "1", "3", "4"]


async def test_prepare_failure_fails_that_topics_messages_only() -> None:
    sent: list[str] = []

    async def send(
        topic: str,
        body: bytes,
        key: bytes | None,
        headers: Mapping[str, str] | None,
        partition: int | None,
    ) -> PublishResult:
        sent.append(topic)
        return PublishResult(topic)

    async def prepare(topic: str) -> None:
        if topic == "no-stream":
            raise LookupError("no stream captures it")

    async with PipelinedPublisher(send, prepare=prepare, chunk_size=4) as publisher:
        futures = [await publisher.submit(t, b"") for t in ("a", "no-stream", "a", "no-stream")]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == [
        "PublishResult", "LookupError", "PublishResult", "LookupError"
    ]  # fmt: skip
    assert sent == ["a", "a"]


async def test_a_failing_chunk_is_reported_and_the_next_goes_on() -> None:
    class Flaky(GatedPublisher):
        async def send_chunk(self, chunk: list[PendingMessage]) -> None:
            if any(item.body == b"boom" for item in chunk):
                raise RuntimeError("client bug")
            for item in chunk:
                self.resolve(item, PublishResult(item.topic))

    publisher = Flaky(chunk_size=2)
    first = [await publisher.submit("t", b) for b in (b"ok", b"boom")]
    second = [await publisher.submit("t", b) for b in (b"a", b"b")]
    with pytest.raises(RuntimeError, match="client bug"):
        await first[0]
    assert [(await f).topic for f in second] == ["t", "t"]
    await publisher.close(1)


async def test_close_flushes_a_lingering_buffer_then_refuses() -> None:
    broker = MemoryBroker()
    await broker.connect()
    publisher = broker.batch_publisher(chunk_size=100, flush_interval=3600)
    futures = [await publisher.submit("t", b"%d" % i, key=b"k") for i in range(3)]
    assert not any(f.done() for f in futures)
    await publisher.close(5)
    assert [f.result().offset for f in futures] == [0, 1, 2]
    with pytest.raises(BatchPublisherClosedError):
        await publisher.submit("t", b"late")
    await broker.close()


async def test_close_timeout_fails_what_is_unconfirmed() -> None:
    publisher = PipelinedPublisher(_never, chunk_size=10, flush_interval=3600)
    futures = [await publisher.submit("t", b"%d" % i) for i in range(3)]
    started = time.monotonic()
    await publisher.close(0.2)
    assert time.monotonic() - started < 5
    for future in futures:
        with pytest.raises(BatchFlushTimeoutError):
            await future
    assert publisher.pending == 0


async def test_a_future_cancelled_by_its_submitter_still_frees_its_slot() -> None:
    publisher = GatedPublisher(chunk_size=1, max_pending=1)
    first = await publisher.submit("t", b"1")
    first.cancel()
    await asyncio.wait_for(publisher.handed.wait(), 5)
    publisher.confirm_all()
    assert publisher.pending == 0
    publisher.handed.clear()
    second = await asyncio.wait_for(publisher.submit("t", b"2"), 5)
    await asyncio.wait_for(publisher.handed.wait(), 5)
    publisher.confirm_all()
    assert (await second).topic == "t"
    await publisher.close(1)


async def test_broker_server_stop_flushes_batching_publishers_within_its_timeout() -> None:
    class StuckBroker(MemoryBroker):
        async def publish(self, topic: str, body: bytes, **kwargs: object) -> PublishResult:  # type: ignore[override]
            if topic == "stuck":
                await asyncio.Event().wait()
            return await super().publish(topic, body, **kwargs)  # type: ignore[arg-type]

    broker = StuckBroker()
    got = Collector()
    router = Router()

    @router.subscriber("t", group="g")
    async def handle(message: Message) -> None:
        got.add(message.body)

    server = BrokerServer(broker, [router])
    await server.start()
    publisher = broker.batch_publisher(chunk_size=100, flush_interval=3600)
    delivered = await publisher.submit("t", b"flushed at stop")
    stuck = await publisher.submit("stuck", b"never confirmed")
    started = time.monotonic()
    await server.stop(0.5)
    assert time.monotonic() - started < 5
    assert (await delivered).topic == "t"
    with pytest.raises(BatchFlushTimeoutError):
        await stuck


async def test_publisher_batch_encodes_payloads() -> None:
    broker = MemoryBroker()
    got = Collector()
    router = Router()

    @router.subscriber("orders", group="g")
    async def handle(order: dict[str, int], message: Message) -> None:
        got.add((order["id"], message.key))

    server = BrokerServer(broker, [router])
    await server.start()
    try:
        async with Publisher(broker).batch(chunk_size=4) as batch:
            futures = [await batch.submit("orders", {"id": i}, key=i % 2) for i in range(6)]
            last = await batch.publish("orders", {"id": 6}, key="x")
        assert all(f.result().topic == "orders" for f in futures) and last.topic == "orders"
        items = await got.wait(7)
        assert sorted(items) == sorted([(i, str(i % 2).encode()) for i in range(6)] + [(6, b"x")])
    finally:
        await server.stop(5)


async def test_pipelined_publishes_run_at_most_max_in_flight_at_once() -> None:
    running: set[bytes] = set()
    most = 0
    release = asyncio.Event()

    async def send(
        topic: str,
        body: bytes,
        key: bytes | None,
        headers: Mapping[str, str] | None,
        partition: int | None,
    ) -> PublishResult:
        nonlocal most
        running.add(body)
        most = max(most, len(running))
        await release.wait()
        running.discard(body)
        return PublishResult(topic)

    publisher = PipelinedPublisher(send, chunk_size=10, max_in_flight=3)
    futures = [await publisher.submit("t", b"%d" % i) for i in range(10)]
    async with asyncio.timeout(5):
        while len(running) < 3:  # noqa: ASYNC110 - bounded by the timeout
            await asyncio.sleep(0)
    release.set()
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert most == 3
    await publisher.close(1)


async def test_a_tag_travels_like_publish_tag_and_a_bad_one_is_refused_at_submit() -> None:
    broker = MemoryBroker()
    got = Collector()
    router = Router()

    @router.subscriber("orders", group="g", tags={"paid"})
    async def handle(message: Message) -> None:
        got.add((message.body, message.tag))

    server = BrokerServer(broker, [router])
    await server.start()
    try:
        async with broker.batch_publisher(chunk_size=2) as publisher:
            await publisher.submit("orders", b"1", tag="created")
            await publisher.submit("orders", b"2", tag="paid")
            with pytest.raises(ValueError):
                await publisher.submit("orders", b"3", tag="not a tag!")
            assert publisher.pending == 2
        assert await got.wait(1) == [(b"2", "paid")]
    finally:
        await server.stop(5)


async def test_closed_batching_publishers_are_not_kept_by_their_broker() -> None:
    broker = MemoryBroker()
    await broker.connect()
    for _ in range(50):
        async with broker.batch_publisher() as publisher:
            await publisher.publish("t", b"x")
    live = broker.batch_publisher()
    assert broker.__dict__["_batch_publishers"] == [live]
    await broker.close()
    assert live.closed


async def test_partition_is_honoured_where_the_broker_has_partitions_and_refused_elsewhere() -> (
    None
):
    broker = MemoryBroker(partitions=3)
    await broker.connect()
    try:
        async with broker.batch_publisher(chunk_size=4) as publisher:
            # The pipelined path hands partition= to the memory broker's publish.
            pinned = [await publisher.submit("t", b"p", key=b"k", partition=p) for p in (2, 0)]
            assert [(await f).partition for f in pinned] == [2, 0]
            with pytest.raises(ValueError):
                await publisher.publish("t", b"nowhere", partition=9)
            batch = Publisher(broker).batch(chunk_size=4)
            assert (await batch.publish("t", "typed", partition=1)).partition == 1
            await batch.close()
    finally:
        await broker.close()
    # A publisher whose broker has no partitions refuses it at submit, never ignores it.
    gated = GatedPublisher(chunk_size=2)
    with pytest.raises(NotImplementedError, match="partition=1"):
        await gated.submit("t", b"x", partition=1)
    assert gated.pending == 0
    await gated.close(1)


class _OlderBroker(Broker):
    """A broker whose ``publish`` predates ``partition=`` (as third-party ones may)."""

    kind = "older"

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        await self.close_batch_publishers()

    async def publish(  # type: ignore[override]
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> PublishResult:
        return PublishResult(topic)

    async def subscribe(self, spec: SubscriberSpec, processor: MessageProcessor) -> Subscription:
        raise NotImplementedError


async def test_the_default_batching_publisher_serves_a_publish_without_partition() -> None:
    broker = _OlderBroker()
    async with broker.batch_publisher(chunk_size=2) as publisher:
        assert (await publisher.publish("t", b"x", key=b"k")).topic == "t"
        with pytest.raises(TypeError, match="partition"):  # asked for, so not dropped
            await publisher.publish("t", b"x", partition=0)
