"""The relay refuses a fire-and-forget broker: it marks a row sent once its publish returned,
so a broker configured with acks='none' could let rows be marked that were never stored."""

from __future__ import annotations

import math

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from framework.broker import MemoryBroker
from framework.data import OutboxRelay
from framework.transport.kafka import KafkaBroker


async def test_a_broker_configured_with_acks_none_is_refused() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        with pytest.raises(ValueError, match=r"'orders'.*acks='none'"):
            OutboxRelay(engine, {"orders": KafkaBroker("example.invalid:9092", acks="none")})
        # the confirmed levels are accepted (nothing connects until start)
        OutboxRelay(engine, {"orders": KafkaBroker("example.invalid:9092", acks="leader")})
    finally:
        await engine.dispose()


async def test_a_handle_at_another_level_hands_out_no_batching_publisher_at_the_configured_one(
) -> None:
    # Kafka's batching publisher runs on the broker's own producer: through a with_acks()
    # handle it published at the configured acks=0, so a relay given
    # broker.with_acks("all") pipelined its rows fire-and-forget and marked them sent.
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        broker = KafkaBroker("example.invalid:9092", acks="none")
        confirmed = broker.with_acks("all")
        with pytest.raises(AttributeError, match=r"configured acks \('none'\)"):
            confirmed.batch_publisher  # noqa: B018
        relay = OutboxRelay(engine, {"orders": confirmed})
        assert relay._batcher("orders") is None  # one by one, each at acks=all
        # a handle at the configured level keeps it
        assert KafkaBroker("example.invalid:9092").with_acks("all").batch_publisher
    finally:
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
