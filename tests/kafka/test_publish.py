"""Publishing on a real Kafka-protocol broker: results, keys, headers, batching, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiokafka.errors import UnknownTopicOrPartitionError

from framework.broker import BrokerServer, Message, PublishResult, Router
from framework.broker.options import UnsupportedOptionError
from framework.broker.processor import SubscriberProcessor
from framework.broker.subscriber import SubscriberSpec
from framework.transport.kafka import (
    BatchingPublisher,
    KafkaBroker,
    KafkaProducerError,
    KafkaUnavailableError,
)
from framework.transport.kafka.tansu import FAST_JOIN
from tests.kafka.conftest import create_topic, read_topic
from tests.services import free_port

pytestmark = pytest.mark.kafka


async def test_publish_returns_partition_and_offset_and_headers_travel(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("publish")
    await create_topic(bootstrap, topic, 3)
    headers = {"trace-id": "abc", "ünïcode": "çødé ✓"}
    first = await broker.publish(topic, b'{"n":1}', key=b"order-42", headers=headers)
    second = await broker.publish(topic, b'{"n":2}', key=b"order-42")
    assert first.topic == topic
    assert first.partition is not None and first.offset is not None
    assert second.partition == first.partition  # the key chooses the partition
    assert second.offset == first.offset + 1

    received: list[Message] = []
    got_both = asyncio.Event()
    router = Router()

    @router.subscriber(topic, group=unique("g"))
    async def handle(message: Message) -> None:
        received.append(message)
        if len(received) == 2:
            got_both.set()

    server = BrokerServer(KafkaBroker(bootstrap, **FAST_JOIN), [router])
    await server.start()
    try:
        async with asyncio.timeout(10):
            await got_both.wait()
    finally:
        await server.stop(5)
    one, two = received
    assert one.body == b'{"n":1}' and one.key == b"order-42"
    assert one.headers == headers
    assert (one.partition, one.offset) == (first.partition, first.offset)
    assert one.id == f"{topic}/{first.partition}/{first.offset}"
    assert two.headers == {}
    assert one.timestamp > time.time() - 60


async def test_batching_publisher_reports_every_message(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("batched")
    await create_topic(bootstrap, topic, 4)
    keys = [f"key-{i % 10}".encode() for i in range(1000)]
    # A reference partition per key, chosen by the plain publish path.
    expected = {key: (await broker.publish(topic, b"ref", key=key)).partition for key in set(keys)}

    async with broker.batch_publisher(chunk_size=128, flush_interval=0.002) as publisher:
        futures = [
            await publisher.submit(topic, f"m{i}".encode(), key=key, headers={"i": str(i)})
            for i, key in enumerate(keys)
        ]
        keyless = await publisher.publish(topic, b"keyless")
        results = await asyncio.gather(*futures)

    assert keyless.partition is not None
    assert all(r.topic == topic for r in results)
    assert [r.partition for r in results] == [expected[key] for key in keys]
    positions = {(r.partition, r.offset) for r in results}
    assert len(positions) == len(results)  # every message has its own offset

    records = await read_topic(bootstrap, topic, len(expected) + len(keys) + 1)
    stored = {(r.partition, r.offset): r for r in records}
    for i, result in enumerate(results):
        record = stored[(result.partition, result.offset)]
        assert record.value == f"m{i}".encode()  # the reported offset holds this message
        assert record.key == keys[i]
        assert dict(record.headers) == {"i": str(i).encode()}


async def test_batching_publisher_fails_only_the_messages_that_failed(
    bootstrap: str, unique: Callable[[str], str]
) -> None:
    kafka = KafkaBroker(bootstrap, request_timeout_ms=1000, **FAST_JOIN)
    await kafka.connect()
    try:
        publisher = kafka.batch_publisher(chunk_size=10)
        good = unique("good")
        futures = [
            await publisher.submit(good if i % 2 else "not a valid topic!", b"m") for i in range(6)
        ]
        await publisher.flush()
        for i, future in enumerate(futures):
            if i % 2:
                assert (await future).topic == good
            else:
                with pytest.raises(UnknownTopicOrPartitionError):
                    await future
    finally:
        await kafka.close()


async def test_batching_publisher_backpressure_holds_for_every_waiting_submitter(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("bounded")
    await create_topic(bootstrap, topic, 1)
    futures: list[asyncio.Future[PublishResult]] = []
    most_unresolved = 0

    async def submit(publisher: BatchingPublisher, i: int) -> None:
        nonlocal most_unresolved
        futures.append(await publisher.submit(topic, f"m{i}".encode()))
        most_unresolved = max(most_unresolved, sum(not f.done() for f in futures))

    async with broker.batch_publisher(chunk_size=1, max_pending=2) as publisher:
        # Many submitters block on the bound at once; one acknowledgement must not let
        # them all through.
        async with asyncio.timeout(10):
            await asyncio.gather(*(submit(publisher, i) for i in range(12)))
    assert len(futures) == 12
    assert all(f.done() and f.exception() is None for f in futures)
    assert most_unresolved <= 2


async def test_batching_publisher_refuses_a_submit_that_waited_through_close(
    broker: KafkaBroker, bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic = unique("closing")
    await create_topic(bootstrap, topic, 1)
    publisher = broker.batch_publisher(chunk_size=1, max_pending=1)
    first = await publisher.submit(topic, b"first")
    waiting = asyncio.create_task(publisher.submit(topic, b"second"))
    await asyncio.sleep(0)  # one step: the second submit now waits for room
    assert not waiting.done()
    async with asyncio.timeout(10):
        await publisher.close()
        with pytest.raises(RuntimeError, match="closed"):
            await waiting
    assert (await first).topic == topic


async def test_unreachable_bootstrap_names_the_address_quickly() -> None:
    address = f"127.0.0.1:{free_port()}"
    kafka = KafkaBroker(address, connect_timeout=5, **FAST_JOIN)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match=address):
        await kafka.connect()
    assert time.monotonic() - started < 6
    await kafka.close()  # safe after a failed connect


async def test_subscribe_refuses_unknown_options_and_needs_connect(bootstrap: str) -> None:
    async def handler(message: Message) -> None: ...

    kafka = KafkaBroker(bootstrap, **FAST_JOIN)
    spec = SubscriberSpec("t", handler, options={"prefetch": 10})
    processor = SubscriberProcessor(spec, broker_kind="kafka")
    with pytest.raises(UnsupportedOptionError, match="prefetch"):
        await kafka.subscribe(spec, processor)
    plain = SubscriberSpec("t", handler)
    with pytest.raises(RuntimeError, match="connect"):
        await kafka.subscribe(plain, SubscriberProcessor(plain, broker_kind="kafka"))
    with pytest.raises(ValueError, match="ordering"):
        KafkaBroker(bootstrap, ordering="random", **FAST_JOIN)


async def test_subscribe_refuses_invalid_option_values(broker: KafkaBroker) -> None:
    async def handler(message: Message) -> None: ...

    for options in ({"ordering": "random"}, {"auto_offset_reset": "newest"}):
        spec = SubscriberSpec("t", handler, options=options)
        (name,) = options
        with pytest.raises(UnsupportedOptionError, match=f"{name} must be one of"):
            await broker.subscribe(spec, SubscriberProcessor(spec, broker_kind="kafka"))


async def test_idempotent_producer_is_opt_in(bootstrap: str, unique: Callable[[str], str]) -> None:
    kafka = KafkaBroker(bootstrap, enable_idempotence=True, **FAST_JOIN)
    try:
        await kafka.connect()
    except KafkaProducerError as exc:
        assert "InitProducerId" in str(exc)  # the failure says what is missing
        pytest.skip("this broker (Tansu) has no idempotent producer: InitProducerId fails")
    try:
        result = await kafka.publish(unique("idempotent"), b"once")
        assert result.offset is not None
    finally:
        await kafka.close()
