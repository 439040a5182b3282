"""Kafka delayed delivery: the delay levels, the relay's in-memory hold (due order whatever
the partition order) and the descent through a level with pause/resume."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from framework.broker import BrokerServer, Message, Router
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.delay import HOLD, LEVELS, MAX_DELAY, DelayLevels
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


def _broker(bootstrap: str, prefix: str, name: str) -> KafkaBroker:
    return KafkaBroker(
        bootstrap,
        client_id=name,
        delay_topic_prefix=prefix,
        delay_check_interval=0.2,
        **FAST_JOIN,
    )


async def _serve(bootstrap: str, prefix: str, topic: str, inbox: Collector) -> BrokerServer:
    router = Router()

    @router.subscriber(topic, group=f"{topic}-g")
    async def handle(message: Message) -> None:
        inbox.add((message, time.time()))

    server = BrokerServer(_broker(bootstrap, prefix, "server"), [router])
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
