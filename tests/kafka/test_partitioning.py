"""Partitions and acknowledgement levels on a Kafka-protocol broker (Tansu).

Where a message lands (by key, as the Java client; in turn; by hand; by a custom partitioner),
the same whether published one by one or through the batching publisher, and publishing at
each acknowledgement level, with fire-and-forget failures reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from framework.broker import BrokerServer, Message, Publisher, Router
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.partitioner import key_partition
from framework.transport.kafka.tansu import FAST_JOIN
from tests.kafka.conftest import create_topic, read_topic

pytestmark = pytest.mark.kafka

KEYS = [b"order-1", b"order-2", b"order-42", b"user:1001", b"foobar", b"\x00\xff"]


async def test_a_key_lands_where_the_java_client_puts_it_whichever_way_it_is_published(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("keys")
    await create_topic(bootstrap, topic, 4)
    singles = [await broker.publish(topic, b"single", key=key) for key in KEYS]
    async with broker.batch_publisher(chunk_size=len(KEYS)) as batch:
        futures = [await batch.submit(topic, b"batched", key=key) for key in KEYS]
        batched = [await future for future in futures]
    for key, single, chunked in zip(KEYS, singles, batched, strict=True):
        assert single.partition == chunked.partition == key_partition(key, 4), key
        assert single.offset is not None and chunked.offset is not None
    records = await read_topic(bootstrap, topic, 2 * len(KEYS))
    for record in records:  # what the broker stored agrees with what publish returned
        assert record.partition == key_partition(record.key, 4)


async def test_explicit_partition_and_keyless_round_robin(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("explicit")
    await create_topic(bootstrap, topic, 3)
    pinned = await broker.publish(topic, b"x", key=b"foobar", partition=2)
    assert pinned.partition == 2 != key_partition(b"foobar", 3)
    assert (await Publisher(broker).publish(topic, "y", partition=1)).partition == 1
    async with broker.batch_publisher(chunk_size=1) as batch:
        assert (await batch.publish(topic, b"z", partition=0)).partition == 0
        with pytest.raises(ValueError, match=r"has partitions 0..2, got partition=3"):
            await batch.publish(topic, b"z", partition=3)
    with pytest.raises(ValueError, match=r"has partitions 0..2, got partition=5"):
        await broker.publish(topic, b"x", partition=5)
    turns = [(await broker.publish(topic, b"rr")).partition for _ in range(6)]
    assert turns == [0, 1, 2, 0, 1, 2]


async def test_a_custom_partitioner_serves_publish_and_the_batching_publisher(
    bootstrap: str, unique: Callable[[str], str]
) -> None:
    def last(key: bytes | None, partitions: Sequence[int]) -> int:
        return partitions[-1]

    topic = unique("custom")
    await create_topic(bootstrap, topic, 3)
    kafka = KafkaBroker(bootstrap, partitioner=last, **FAST_JOIN)
    await kafka.connect()
    try:
        assert (await kafka.publish(topic, b"a", key=b"foobar")).partition == 2
        async with kafka.batch_publisher() as batch:
            assert (await batch.publish(topic, b"b")).partition == 2
    finally:
        await kafka.close()


async def test_a_partitioner_that_raises_fails_only_that_message(
    bootstrap: str, unique: Callable[[str], str]
) -> None:
    def picky(key: bytes | None, partitions: Sequence[int]) -> int:
        if key == b"bad":
            raise RuntimeError("no partition for bad")
        return partitions[0]

    topic = unique("picky")
    await create_topic(bootstrap, topic, 2)
    kafka = KafkaBroker(bootstrap, partitioner=picky, **FAST_JOIN)
    await kafka.connect()
    try:
        async with kafka.batch_publisher(chunk_size=10) as batch:
            futures = [await batch.submit(topic, b"m", key=key) for key in (b"a", b"bad", b"b")]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        assert isinstance(outcomes[1], RuntimeError)
        assert [o.partition for o in (outcomes[0], outcomes[2])] == [0, 0]  # type: ignore[union-attr]
    finally:
        await kafka.close()


async def test_each_acks_level_publishes_and_the_message_arrives(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("acks")
    await create_topic(bootstrap, topic, 1)
    results = {}
    for level in ("none", "leader", "all"):
        publisher = Publisher(broker, acks=level)  # type: ignore[arg-type]
        results[level] = await publisher.publish(topic, level, key=level)
    assert results["none"].offset is None and results["none"].partition == 0
    assert results["leader"].offset is not None and results["all"].offset is not None
    records = await read_topic(bootstrap, topic, 3)
    assert [r.value for r in records] == [b"none", b"leader", b"all"]
    assert broker.unconfirmed.count == 0


async def test_a_fire_and_forget_failure_is_raised_counted_logged_and_reported(
    bootstrap: str, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique("lost")
    await create_topic(bootstrap, topic, 1)
    kafka = KafkaBroker(bootstrap, acks="none", max_request_size=200, **FAST_JOIN)
    await kafka.connect()
    reported: list[tuple[str, BaseException]] = []
    try:
        assert kafka.default_acks == "none"
        publisher = Publisher(kafka, on_error=lambda t, e: reported.append((t, e)))
        with pytest.raises(MessageSizeTooLargeError), caplog.at_level(logging.ERROR):
            await publisher.publish(topic, b"x" * 1000)
        assert kafka.unconfirmed.count == 1
        assert [t for t, _ in reported] == [topic]
        assert "fire-and-forget publish to" in caplog.text and "1 failure(s)" in caplog.text
        # A failure known only after publish returned takes the same way (the callback
        # aiokafka's send future runs).
        failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionError("connection lost before the send"))
        view = kafka.with_acks("none", on_error=lambda t, e: reported.append((t, e)))
        assert view.kind == "kafka"
        kafka._reporter(topic, view.mode)(failed)  # type: ignore[attr-defined]
        assert kafka.unconfirmed.count == 2
        assert isinstance(reported[-1][1], ConnectionError)
    finally:
        await kafka.close()


async def test_the_batching_publisher_at_acks_none_reports_no_offset(
    bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("batch-none")
    await create_topic(bootstrap, topic, 2)
    kafka = KafkaBroker(bootstrap, acks=0, **FAST_JOIN)
    await kafka.connect()
    try:
        async with kafka.batch_publisher(chunk_size=4) as batch:
            futures = [await batch.submit(topic, b"m", key=key) for key in KEYS[:4]]
            results = [await future for future in futures]
        assert [r.offset for r in results] == [None] * 4
        assert [r.partition for r in results] == [key_partition(k, 2) for k in KEYS[:4]]
        assert len(await read_topic(bootstrap, topic, 4)) == 4
    finally:
        await kafka.close()


async def test_dead_letters_of_a_fire_and_forget_broker_are_acknowledged(
    bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("dlq-none")
    await create_topic(bootstrap, topic, 1)
    await create_topic(bootstrap, f"{topic}.dlq", 1)
    router = Router()

    @router.subscriber(topic, group=unique("g"), retry=1)
    async def fails(message: Message) -> None:
        raise ValueError("to the dead letters")

    kafka = KafkaBroker(bootstrap, acks="none", **FAST_JOIN)
    server = BrokerServer(kafka, [router])
    await server.start()
    try:
        await kafka.publish(topic, b"doomed")
        [letter] = await read_topic(bootstrap, f"{topic}.dlq", 1)
        assert letter.value == b"doomed"
        # The acks=all producer, not the broker's acks=0 one.
        assert kafka._dead_letter_producer() is not kafka._require_producer()
    finally:
        await server.stop(5)
