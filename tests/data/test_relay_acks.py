"""The relay refuses a fire-and-forget broker: it marks a row sent once its publish returned,
so a broker configured with acks='none' could let rows be marked that were never stored."""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from framework.broker import MemoryBroker, PublishResult
from framework.broker.batching import PipelinedPublisher
from framework.data import OutboxRelay
from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.tansu import FAST_JOIN


def _kafka(acks: str) -> KafkaBroker:
    return KafkaBroker("example.invalid:9092", acks=acks, **FAST_JOIN)


async def test_a_broker_configured_with_acks_none_is_refused() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        with pytest.raises(ValueError, match=r"'orders'.*acks='none'"):
            OutboxRelay(engine, {"orders": _kafka(acks="none")})
        # the confirmed levels are accepted (nothing connects until start)
        OutboxRelay(engine, {"orders": _kafka(acks="leader")})
    finally:
        await engine.dispose()


async def test_a_handle_at_another_level_batches_at_its_own_level() -> None:
    # Kafka's native batching publisher runs on the broker's own producer: handed out by a
    # with_acks() handle it published at the configured acks=0, so a relay given
    # broker.with_acks("all") pipelined its rows fire-and-forget and marked them sent.
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    broker = _kafka(acks="none")
    try:
        confirmed = broker.with_acks("all")
        relay = OutboxRelay(engine, {"orders": confirmed})
        batcher = relay._batcher("orders")
        assert isinstance(batcher, PipelinedPublisher)  # not Kafka's native one
        through: list[str] = []

        async def publish_at_the_handle(topic: str, body: bytes, **kwargs: Any) -> PublishResult:
            through.append(topic)
            return PublishResult(topic, 0, 0)

        confirmed.publish = publish_at_the_handle  # type: ignore[method-assign]
        await (await batcher.submit("orders-events", b"{}"))
        assert through == ["orders-events"]  # each message went through the acks=all handle
        await batcher.close()
    finally:
        await broker.close()
        await engine.dispose()


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("retention", math.nan),
        ("retention", -1.0),
        ("inbox_retention", math.inf),
        ("poll_interval", math.nan),
        ("cleanup_interval", 0),
        ("max_backoff", math.inf),
        ("round_batches", 1.5),
        ("lock_slots", True),
        ("batch_size", 0),
    ],
)
async def test_a_relay_option_out_of_range_is_refused_naming_it(
    argument: str, value: float
) -> None:
    # retention=nan was accepted, then every clean-up failed (timedelta(seconds=nan));
    # poll_interval=nan passed the "> 0" check.
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        with pytest.raises(ValueError, match=rf"OutboxRelay: {argument} must be"):
            OutboxRelay(engine, MemoryBroker(), **{argument: value})
    finally:
        await engine.dispose()


async def test_the_relay_keeps_its_name() -> None:
    # The argument checks looped over a variable called name: every relay was then named
    # after the last argument checked, and its log lines said "inbox_retention: ...".
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        assert OutboxRelay(engine, MemoryBroker(), name="orders-relay").name == "orders-relay"
        assert OutboxRelay(engine, MemoryBroker()).name == "outbox-relay"
    finally:
        await engine.dispose()
