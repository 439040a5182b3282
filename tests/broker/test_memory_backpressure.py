"""Issue 8 item 3 on the memory broker: one blocked key or partition stalls nothing else.

Before the fix, each worker had a fixed queue and a key was hashed to one of them: a blocked
handler stopped every key that shared its worker, and once that queue was full the fetcher of
the blocked partition blocked too. Now keys take turns on the workers through lanes, and
back-pressure is per partition: a partition whose backlog fills its prefetch stops being
fetched, the others go on.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator

import pytest

from framework.broker import BrokerServer, MemoryBroker, Message, Router
from tests.broker.helpers import Collector

PARTITIONS = 2
BACKLOG = 4_100  # the backlog: far beyond one partition's prefetch


def _partition(key: bytes) -> int:
    return zlib.crc32(key) % PARTITIONS  # the memory broker's partitioner (memlog.Topic)


def _keys(partition: int, count: int, prefix: str) -> list[bytes]:
    keys: list[bytes] = []
    n = 0
    while len(keys) < count:
        key = f"{prefix}-{n}".encode()
        if _partition(key) == partition:
            keys.append(key)
        n += 1
    return keys


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker(partitions=PARTITIONS)
    await broker.connect()
    yield broker
    await broker.close()


@pytest.mark.parametrize("concurrency", [2, 4])
async def test_item3_a_blocked_key_stalls_only_itself(
    broker: MemoryBroker, concurrency: int
) -> None:
    blocked_key = _keys(0, 1, "stuck")[0]
    release = asyncio.Event()
    entered = asyncio.Event()
    handled = Collector()
    router = Router()

    @router.subscriber("orders", group="g", concurrency=concurrency)
    async def handle(message: Message) -> None:
        if message.key == blocked_key:
            entered.set()
            await release.wait()
            return
        handled.add(message.key)

    # Keys of the blocked partition published before its backlog, so within its prefetch,
    # and keys of the other partition published after the backlog.
    same_partition = _keys(0, 10, "early")
    for key in same_partition:
        await broker.publish("orders", b"{}", key=key)
    await broker.publish("orders", b"{}", key=blocked_key)
    for _ in range(BACKLOG):
        await broker.publish("orders", b"{}", key=blocked_key)
    other_partition = _keys(1, 20, "other")
    for key in other_partition:
        await broker.publish("orders", b"{}", key=key)

    server = BrokerServer(broker, [router])
    await server.start()
    try:
        await asyncio.wait_for(entered.wait(), 10)
        got = await handled.wait(len(same_partition) + len(other_partition), timeout=10)
        assert sorted(got) == sorted(same_partition + other_partition)
        # The blocked partition holds a bounded backlog in memory, not all 4,100.
        cursor = next(c for c in broker._groups[("orders", "g")].cursors if c.partition.index == 0)
        assert cursor.inflight <= 256 + 1
    finally:
        release.set()
        await server.stop(10)


async def test_item3_per_key_order_holds_with_lanes(broker: MemoryBroker) -> None:
    seen: dict[bytes, list[int]] = {}
    done = Collector()
    router = Router()

    @router.subscriber("ordered", group="g", concurrency=4)
    async def handle(message: Message) -> None:
        # Yield between messages so workers interleave and any overtaking would show.
        await asyncio.sleep(0)
        seen.setdefault(message.key or b"", []).append(int(message.body))
        done.add(1)

    keys = [f"k{i}".encode() for i in range(8)]
    for n in range(400):
        await broker.publish("ordered", str(n).encode(), key=keys[n % len(keys)])
    server = BrokerServer(broker, [router])
    await server.start()
    try:
        await done.wait(400)
        for key in keys:
            assert seen[key] == sorted(seen[key]), key
    finally:
        await server.stop(10)
