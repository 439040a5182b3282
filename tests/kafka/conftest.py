"""Fixtures for the Kafka tests: one Tansu broker per session on a free loopback port.

If the tansu binary cannot start, the tests skip (or fail when PYKRATOS_REQUIRE_SERVICES=1,
see tests/services.py). Every test uses its own topics and groups, so they share the broker
without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from framework.transport.kafka import KafkaBroker
from framework.transport.kafka.tansu import FAST_JOIN, TansuProcess, TansuUnavailable
from tests.services import free_port, unavailable


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuProcess]:
    try:
        process = TansuProcess(port=free_port()).start()
    except TansuUnavailable as exc:
        unavailable(f"Tansu (Kafka-protocol broker): {exc}")
        raise  # unreachable: unavailable() skips or fails
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def bootstrap(tansu: TansuProcess) -> str:
    return tansu.bootstrap_servers


@pytest.fixture
def unique() -> Callable[[str], str]:
    """``unique("orders")`` -> ``"orders-3f9c1a2b"``: a topic/group name no other test uses."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def broker(bootstrap: str) -> AsyncIterator[KafkaBroker]:
    """A connected broker for publishing (and reading DLQs) from the test itself."""
    kafka = KafkaBroker(bootstrap, client_id="tests", **FAST_JOIN)
    await kafka.connect()
    try:
        yield kafka
    finally:
        await kafka.close()


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[Any]:
    """The first ``count`` records of ``topic`` (all partitions, no group), in arrival order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            partitions: set[int] | None = None
            while not partitions:  # the topic may not exist yet (a DLQ created on first use)
                # consumer.topics() fetches fresh metadata but does not store it in the
                # client's cluster view, which partitions_for_topic() reads: read the
                # fresh one, or a topic created after start() is never seen.
                cluster = await consumer._client.fetch_all_metadata()
                partitions = cluster.partitions_for_topic(topic)
                if not partitions:
                    await asyncio.sleep(0.05)  # topic creation has no event to wait on
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


class Waiter:
    """Counts events and lets a test await a count without sleeping."""

    def __init__(self) -> None:
        self.count = 0
        self._targets: list[tuple[int, asyncio.Event]] = []

    def add(self, n: int = 1) -> None:
        self.count += n
        for target, event in self._targets:
            if self.count >= target:
                event.set()

    async def wait_for(self, target: int, timeout: float = 15.0) -> None:
        event = asyncio.Event()
        self._targets.append((target, event))
        if self.count >= target:
            event.set()
        async with asyncio.timeout(timeout):
            await event.wait()
