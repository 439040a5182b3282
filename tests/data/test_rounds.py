"""Relay rounds: several batches per transaction, key locks between rounds, retention 0."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framework.broker import PublishResult
from framework.broker.batching import BatchingPublisher, PendingMessage
from framework.broker.message import Message
from framework.data import DEAD, OutboxRelay, TransactionalOutbox, outbox
from framework.data.claims import open_round
from tests.data.conftest import RecordingBroker


class Batcher(BatchingPublisher):
    """A batching publisher on a :class:`RecordingBroker`: each message is confirmed by a
    later loop iteration, so a round's batches are really in flight together."""

    def __init__(self, broker: RecordingBroker) -> None:
        super().__init__(chunk_size=1000, flush_interval=0.001, name="recording-batcher")
        self.broker = broker
        self.submitted = 0

    async def send_chunk(self, chunk: list[PendingMessage]) -> None:
        self.submitted += len(chunk)
        loop = asyncio.get_running_loop()
        for item in chunk:
            loop.call_soon(self._confirm, item)

    def _confirm(self, item: PendingMessage) -> None:
        if item.topic in self.broker.refuse:
            self.reject((item,), ValueError(f"topic {item.topic!r} refused"))
            return
        self.broker.published.append(
            Message(item.body, item.topic, item.key, dict(item.headers or {}))
        )
        self.resolve(item, PublishResult(item.topic))


class BatchingRecorder(RecordingBroker):
    def __init__(self) -> None:
        super().__init__()
        self.batcher = Batcher(self)

    def batch_publisher(self, **kwargs: Any) -> Batcher:  # type: ignore[override]
        return self.batcher


async def _fill(uow: TransactionalOutbox, count: int, keys: int, topic: str = "t") -> None:
    for start in range(0, count, 10):
        async with uow.begin() as tx:
            for n in range(start, min(start + 10, count)):
                tx.add_message(topic, {"n": n}, key=f"k{n % keys}")


def _in_key_order(broker: RecordingBroker, count: int, keys: int) -> None:
    for k in range(keys):
        seen = [json.loads(m.body)["n"] for m in broker.published if m.key == f"k{k}".encode()]
        assert seen == list(range(k, count, keys)), f"key k{k}"


async def test_a_round_pipelines_batches_in_key_order(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    await _fill(uow, 200, 5)
    broker = BatchingRecorder()
    relay = OutboxRelay(engine, broker, batch_size=16, round_batches=3)
    claimed = []
    while count := (await relay.relay_once()).claimed:
        claimed.append(count)
    assert claimed[0] == 48  # three full batches in the first round's transaction
    assert sum(claimed) == 200 and broker.batcher.submitted == 200
    _in_key_order(broker, 200, 5)
    assert relay.sent == 200


async def test_retention_zero_deletes_confirmed_rows_and_keeps_dead_ones(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    await _fill(uow, 60, 3)
    await _fill(uow, 1, 1, topic="refused")
    broker = BatchingRecorder()
    broker.refuse.add("refused")
    relay = OutboxRelay(engine, broker, batch_size=25, retention=0)
    while (await relay.relay_once()).claimed:
        pass
    _in_key_order(broker, 60, 3)
    async with engine.connect() as conn:
        left = (await conn.execute(select(outbox.c.state, outbox.c.topic))).all()
    assert [(row.state, row.topic) for row in left] == [(DEAD, "refused")]
    assert relay.sent == 60 and relay.dead == 1


async def _ids(engine: AsyncEngine) -> dict[str, list[int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.id, outbox.c.key).order_by(outbox.c.id))).all()
    ids: dict[str, list[int]] = {}
    for row in rows:
        ids.setdefault(row.key.decode(), []).append(row.id)
    return ids


async def test_a_later_batch_takes_no_key_another_relay_let_go(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite: one relay per database, nothing to share
    uow = TransactionalOutbox(sessions)
    for n in range(6):  # ids alternate: j k j k j k
        async with uow.begin() as tx:
            tx.add_message("t", {"n": n}, key="jk"[n % 2])
    ids = await _ids(engine)
    options: dict[str, Any] = {"window": 100, "lock_slots": 1024, "delete_sent": False}
    async with open_round(engine, **options) as second:
        async with open_round(engine, **options) as first:
            assert [row.id for row in await first.claim(1)] == ids["j"][:1]
            # j is held by the first round: the second takes k's rows only
            taken = await second.claim(2)
            assert [row.id for row in taken] == ids["k"][:2]
            await first.mark_sent([ids["j"][0]])
        # j is free again, but its second row (older than the last one claimed) is
        # still pending: the second round's next batch must not start j at its third row
        later = await second.claim(10, after=taken[-1].id)
        assert [row.id for row in later] == ids["k"][2:]
        # nor did it lock j in passing: another round takes j from its oldest pending row
        async with open_round(engine, **options) as third:
            assert [row.id for row in await third.claim(10)] == ids["j"][1:]
    async with engine.connect() as conn:
        pending = await conn.scalar(select(func.count()).where(outbox.c.state == 0))
    assert pending == 5  # nothing marked by the second round; j's first row is SENT


async def test_a_claim_skips_keys_another_round_holds_and_takes_them_after_its_commit(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if engine.dialect.name != "postgresql":
        return
    uow = TransactionalOutbox(sessions)
    await _fill(uow, 12, 3)
    ids = await _ids(engine)
    options: dict[str, Any] = {"window": 100, "lock_slots": 1024, "delete_sent": False}
    async with open_round(engine, **options) as first:
        held = await first.claim(2)  # k0 and k1 from their oldest rows
        assert {row.key for row in held} == {b"k0", b"k1"}
        async with open_round(engine, **options) as second:
            assert [row.id for row in await second.claim(100)] == ids["k2"]
        await first.mark_sent([row.id for row in held])
    async with open_round(engine, **options) as third:
        rows = await third.claim(100)
    assert [row.id for row in rows] == sorted(ids["k0"][1:] + ids["k1"][1:] + ids["k2"])
    assert {row.message_id for row in rows}.isdisjoint({row.message_id for row in held})
