"""The relay refuses a fire-and-forget broker: it marks a row sent once its publish returned,
so a broker configured with acks='none' could let rows be marked that were never stored."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

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
