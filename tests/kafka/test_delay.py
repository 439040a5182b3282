"""Kafka delayed delivery: the delay levels, the relay's in-memory hold (due order whatever
the partition order) and the descent through a level with pause/resume."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from framework.broker import BrokerServer, Message, Router
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.delay import HOLD, LEVELS, MAX_DELAY, DelayLevels
from framework.transport.kafka.partitioner import key_partition
from framework.transport.kafka.tansu import FAST_JOIN
from tests.broker.helpers import Collector

from .conftest import create_topic

pytestmark = pytest.mark.kafka


def test_levels_hold_short_delays_and_halve_the_rest() -> None:
    levels = DelayLevels("d")
    assert levels.topics[0] == "d.0" and len(levels.topics) == LEVELS
    assert levels.level_for(0.0) == levels.level_for(HOLD - 0.001) == 0
    # Level k >= 1 holds [HOLD * 2**(k-1), HOLD * 2**k) seconds left.
    for k in range(1, LEVELS - 1):
        low = HOLD * 2 ** (k - 1)
        assert levels.level_for(low) == k
        assert levels.level_for(2 * low - 0.001) == k
        assert levels.take_at(k, 1000.0) == 1000.0 - low
    assert levels.level_for(MAX_DELAY * 10) == LEVELS - 1


async def test_longer_than_the_levels_and_bad_arguments_are_refused(bootstrap: str) -> None:
    broker = KafkaBroker(
        bootstrap, client_id="tests", delay_topic_prefix="never-used", **FAST_JOIN
    )
    await broker.connect()
    try:
        with pytest.raises(ValueError, match="Kafka delays go up to"):
            await broker.publish("t", b"x", delay=MAX_DELAY * 2)
        with pytest.raises(ValueError, match="timezone-aware"):
            await broker.publish("t", b"x", deliver_at=datetime.now())
    finally:
        await broker.close()


def _broker(bootstrap: str, prefix: str, name: str, **options: object) -> KafkaBroker:
    return KafkaBroker(
        bootstrap,
        client_id=name,
        delay_topic_prefix=prefix,
        delay_check_interval=0.2,
        **FAST_JOIN,
        **options,
    )


async def _serve(
    bootstrap: str, prefix: str, topic: str, inbox: Collector, **options: object
) -> BrokerServer:
    router = Router()

    @router.subscriber(topic, group=f"{topic}-g")
    async def handle(message: Message) -> None:
        inbox.add((message, time.time()))

    server = BrokerServer(_broker(bootstrap, prefix, "server", **options), [router])
    await server.start()
    return server


async def test_held_records_go_out_in_due_order_byte_exact(bootstrap: str, unique: object) -> None:
    topic, prefix = f"dl-{time.monotonic_ns()}", f"delay-{time.monotonic_ns()}"
    await create_topic(bootstrap, topic, 1)
    inbox = Collector()
    server = await _serve(bootstrap, prefix, topic, inbox)
    publisher = _broker(bootstrap, prefix, "publisher")
    await publisher.connect()
    try:
        now = datetime.now(UTC)
        headers = {"x-binary": b"\xc3\x28".decode("utf-8", "surrogateescape"), "x-empty": ""}
        later, sooner = now + timedelta(seconds=2.0), now + timedelta(seconds=1.0)
        await publisher.publish(topic, b"later", key=b"\x00k", headers=headers, deliver_at=later)
        await publisher.publish(topic, b"sooner", deliver_at=sooner)
        [(first, at_first), (second, at_second)] = await inbox.wait(2, timeout=30)
        assert (first.body, second.body) == (b"sooner", b"later")
        assert at_first >= sooner.timestamp() and at_second >= later.timestamp()
        assert second.key == b"\x00k" and second.headers == headers
        relay = server.broker.relay  # type: ignore[attr-defined]
        assert relay is not None and relay.relayed == 2 and relay.held == 0
    finally:
        await publisher.close()
        await server.stop(5)


async def test_the_relay_forwards_with_acks_all_on_a_fire_and_forget_broker(
    bootstrap: str,
) -> None:
    """The relay commits the delay topic once a forward is acknowledged: on a broker whose
    own producer is acks=0 it must forward through the acks=all one, as dead letters go."""
    topic, prefix = f"dl-{time.monotonic_ns()}", f"delay-{time.monotonic_ns()}"
    await create_topic(bootstrap, topic, 1)
    inbox = Collector()
    server = await _serve(bootstrap, prefix, topic, inbox, acks="none")
    publisher = _broker(bootstrap, prefix, "publisher")
    await publisher.connect()
    try:
        await publisher.publish(topic, b"late", delay=0.5)
        [(message, _)] = await inbox.wait(1, timeout=30)
        assert message.body == b"late"
        broker = server.broker
        assert isinstance(broker, KafkaBroker) and broker.relay is not None
        forwarding = broker.relay._producer()
        assert forwarding is broker._other_producers["all"]  # not the acks=0 producer
        assert forwarding is not broker._require_producer()
    finally:
        await publisher.close()
        await server.stop(5)


@pytest.mark.slow
async def test_a_record_beyond_the_hold_descends_a_level_and_arrives_on_time(
    bootstrap: str,
) -> None:
    topic, prefix = f"dl-{time.monotonic_ns()}", f"delay-{time.monotonic_ns()}"
    await create_topic(bootstrap, topic, 1)
    inbox = Collector()
    server = await _serve(bootstrap, prefix, topic, inbox)
    publisher = _broker(bootstrap, prefix, "publisher")
    await publisher.connect()
    try:
        # Level 1 first (its head pauses the partition), then one for level 0.
        far = time.time() + HOLD + 1.0
        await publisher.publish(topic, b"far", delay=HOLD + 1.0)
        await publisher.publish(topic, b"near", delay=0.5)
        [(first, _), (second, at_second)] = await inbox.wait(2, timeout=HOLD + 30)
        assert (first.body, second.body) == (b"near", b"far")
        assert at_second >= far
    finally:
        await publisher.close()
        await server.stop(5)


async def test_a_delayed_message_lands_where_its_publisher_placed_it(bootstrap: str) -> None:
    """The partition is chosen at publish (a custom partitioner, or partition=) and carried
    to the relay, which runs in another broker with the default partitioner."""
    topic, prefix = f"dl-{time.monotonic_ns()}", f"delay-{time.monotonic_ns()}"
    await create_topic(bootstrap, topic, 3)
    inbox = Collector()
    server = await _serve(bootstrap, prefix, topic, inbox)

    def last(key: bytes | None, partitions: list[int]) -> int:
        return partitions[-1]

    publisher = _broker(bootstrap, prefix, "publisher", partitioner=last)
    await publisher.connect()
    try:
        key = b"foobar"
        assert key_partition(key, 3) == 0  # where the relay's own partitioner would put it
        placed = await publisher.publish(topic, b"custom", key=key, delay=0.3)
        pinned = await publisher.publish(topic, b"pinned", key=key, delay=0.3, partition=1)
        assert (placed.partition, placed.offset) == (2, None)
        assert (pinned.partition, pinned.offset) == (1, None)
        arrived = {message.body: message.partition for message, _ in await inbox.wait(2, 30)}
        assert arrived == {b"custom": 2, b"pinned": 1}
    finally:
        await publisher.close()
        await server.stop(5)
