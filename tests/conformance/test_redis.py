"""The broker conformance suite on Redis Streams, under a key prefix of its own (its keys are
deleted after), so that ``drop_connections`` (``CLIENT KILL`` by client name) and the cleanup
touch only this suite's connections and streams on the shared Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from framework.testing.conformance import BrokerConformance, BrokerFactory, Harness
from tests.redis.helpers import make_broker
from tests.services import redis_url, require_url

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prefix() -> AsyncIterator[str]:
    require_url(redis_url(), "Redis")
    name = f"pykratos-conformance:{uuid.uuid4().hex[:8]}:"
    yield name
    admin = Redis.from_url(redis_url())
    try:
        keys = [key async for key in admin.scan_iter(match=f"{name}*")]
        if keys:
            await admin.unlink(*keys)
    finally:
        await admin.aclose()


class TestRedis(BrokerConformance):
    broker_name = "redis"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "key_partition": "a Redis stream has no partitions (a key orders its messages within "
        "a group); publish(partition=) raises NotImplementedError",
    }
    emulated: ClassVar[Mapping[str, str]] = {
        "delay": "Redis Streams have no delayed entries: a sorted-set schedule moved into the "
        "stream when due by an atomic Lua script (a mover per subscribing broker)",
        "deliver_at": "as delay (the schedule's score is the due time)",
        "delay_outlives_publisher": "the entry waits in the schedule until a mover runs",
        "tags": "Redis Streams cannot filter a group's reads: the tag travels as a field and the "
        "processor acknowledges (XACK), unhandled, an entry the subscriber did not ask for",
    }

    @pytest.fixture
    def make_broker(self, prefix: str) -> BrokerFactory:
        self.client_prefix = f"pykratos-conformance.{prefix.split(':')[1]}."
        self.key_prefix = prefix
        # Claims after 1 s instead of 30 s: a crashed consumer's entries come back within
        # the suite's waits.
        return lambda name: make_broker(
            prefix,
            client_name=self.client_prefix + name,
            claim_idle_ms=1_000,
            claim_interval=0.2,
        )

    async def refused_message(self, harness: Harness, topic: str) -> tuple[str, bytes]:
        # Any key is a valid stream name; XADD to a key holding a string fails (WRONGTYPE).
        refused = f"{topic}.not-a-stream"
        admin = Redis.from_url(redis_url())
        try:
            await admin.set(f"{self.key_prefix}{refused}", b"a string")
        finally:
            await admin.aclose()
        return refused, b"refused: WRONGTYPE"

    async def drop_connections(self) -> None:
        admin = Redis.from_url(redis_url())
        try:
            for client in await admin.client_list():
                if str(client.get("name", "")).startswith(self.client_prefix):
                    await admin.client_kill_filter(_id=client["id"])
        finally:
            await admin.aclose()
