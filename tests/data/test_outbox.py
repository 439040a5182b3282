"""The unit of work and the relay on SQLite and PostgreSQL (the broker is a recorder here;
tests/app_template/test_outbox_*.py run the same path against Tansu and RabbitMQ)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framework.broker import MESSAGE_ID
from framework.data import (
    DEAD,
    PENDING,
    SENT,
    OutboxRelay,
    TransactionalOutbox,
    outbox,
    outbox_sent,
)
from framework.data.claims import open_round
from tests.data.conftest import RecordingBroker, eventually, items

#: ``_states`` key of the rows in ``outbox_sent``.
ARCHIVED = "outbox_sent"


async def _states(engine: AsyncEngine) -> dict[int | str, int]:
    """``outbox`` rows per state, and the rows in ``outbox_sent`` under :data:`ARCHIVED`."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(outbox.c.state, func.count()).group_by(outbox.c.state))
        ).all()
        archived = await conn.scalar(select(func.count()).select_from(outbox_sent))
    states: dict[int | str, int] = {state: count for state, count in rows}
    if archived:
        states[ARCHIVED] = archived
    return states


async def test_rows_and_messages_commit_together(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    async with uow.begin() as tx:
        await tx.session.execute(insert(items).values(id="a"))
        message_id = tx.add_message("t", {"n": 1}, key="a", headers={"x": "\udcc3("})
    with pytest.raises(RuntimeError):
        async with uow.begin() as tx:
            await tx.session.execute(insert(items).values(id="b"))
            tx.add_message("t", {"n": 2}, key="b")
            raise RuntimeError("business rule failed")
    async with engine.connect() as conn:
        assert (await conn.execute(select(items.c.id))).scalars().all() == ["a"]
        rows = (await conn.execute(select(outbox))).all()
    assert len(rows) == 1
    row = rows[0]
    assert row.state == PENDING and row.topic == "t" and row.key == b"a"
    assert json.loads(row.body) == {"n": 1}
    headers = json.loads(row.headers)
    # the id is fixed now, and header bytes that are not UTF-8 survive storage exactly
    assert headers[MESSAGE_ID] == message_id == row.message_id
    assert headers["x"].encode("utf-8", "surrogateescape") == b"\xc3("


async def test_a_header_that_is_not_a_str_is_refused_when_added(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Refused in the transaction, not found out by the relay: a row no broker could take
    would otherwise fail its relay round for good (seen on Kafka: every key stalled)."""
    uow = TransactionalOutbox(sessions)
    async with uow.begin() as tx:
        for odd in ({"attempt": 1}, {"x": None}, {"x": b"raw"}):
            with pytest.raises(TypeError, match="header"):
                tx.add_message("t", {"n": 1}, key="a", headers=odd)  # type: ignore[arg-type]
        assert tx.messages == []


async def test_relay_publishes_in_key_order_and_marks_sent(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    ids = []
    for n in range(30):
        async with uow.begin() as tx:
            ids.append(tx.add_message("t", {"n": n}, key=f"k{n % 3}"))
    broker = RecordingBroker()
    relay = OutboxRelay(engine, broker, outbox=uow, batch_size=7)
    while (await relay.relay_once()).claimed:
        pass
    assert sorted(m.headers[MESSAGE_ID] for m in broker.published) == sorted(ids)
    for k in range(3):
        seen = [json.loads(m.body)["n"] for m in broker.published if m.key == f"k{k}".encode()]
        assert seen == list(range(k, 30, 3))
    assert await _states(engine) == {ARCHIVED: 30}


async def test_broker_down_backs_off_loses_nothing_and_blocks_no_commit(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    broker = RecordingBroker()
    broker.down = True
    relay = OutboxRelay(engine, broker, outbox=uow, min_backoff=0.01, max_backoff=0.05)
    await relay.start()
    try:
        for n in range(50):
            async with asyncio.timeout(2):  # a commit never waits for the broker
                async with uow.begin() as tx:
                    tx.add_message("t", {"n": n}, key=str(n % 5))
        await eventually(lambda: relay.failures >= 3)
        assert broker.published == []
        assert await _states(engine) == {PENDING: 50}
        broker.down = False
        await eventually(lambda: relay.sent == 50)
    finally:
        await relay.stop(5)
    assert sorted(json.loads(m.body)["n"] for m in broker.published) == list(range(50))
    for k in range(5):
        seen = [json.loads(m.body)["n"] for m in broker.published if m.key == str(k).encode()]
        assert seen == list(range(k, 50, 5))
    assert await _states(engine) == {ARCHIVED: 50}


async def test_relay_wakes_on_commit(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    broker = RecordingBroker()
    # a poll interval far longer than the test: only the wake-up can deliver in time
    relay = OutboxRelay(engine, broker, outbox=uow, poll_interval=60)
    await relay.start()
    try:
        await asyncio.sleep(0.1)  # the relay is idle, waiting
        async with uow.begin() as tx:
            tx.add_message("t", "hello")
        await eventually(lambda: bool(broker.published), timeout=5)
    finally:
        await relay.stop(5)


async def test_permanent_failure_is_dead_lettered_with_reason(
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    uow = TransactionalOutbox(sessions)
    async with uow.begin() as tx:
        tx.add_message("ok", 1, key="k")
        bad_id = tx.add_message("bad", 2, key="k")
        tx.add_message("ok", 3, key="k")
    broker = RecordingBroker()
    broker.refuse = {"bad"}
    relay = OutboxRelay(engine, broker)
    with caplog.at_level(logging.ERROR, "pykratos.data"):
        while (await relay.relay_once()).claimed:
            pass
    assert [json.loads(m.body) for m in broker.published] == [1, 3]  # the key went on
    async with engine.connect() as conn:
        dead = (await conn.execute(select(outbox).where(outbox.c.state == DEAD))).one()
    assert dead.message_id == bad_id
    assert dead.error == "ValueError: topic 'bad' refused"
    assert json.loads(dead.headers)[MESSAGE_ID] == bad_id
    assert any(bad_id in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


async def test_stop_drains_pending_rows(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    broker = RecordingBroker()
    relay = OutboxRelay(engine, broker, poll_interval=60, batch_size=10)
    await relay.start()
    for n in range(40):
        async with uow.begin() as tx:  # not a listener of this outbox: nothing wakes it
            tx.add_message("t", n)
    await relay.stop(10)
    assert len(broker.published) == 40
    assert await _states(engine) == {ARCHIVED: 40}


async def test_sent_rows_are_cleaned_up_after_retention(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    for n in range(3):
        async with uow.begin() as tx:
            tx.add_message("t", n)
    async with uow.begin() as tx:
        tx.add_message("refused", "dead")
    broker = RecordingBroker()
    broker.refuse = {"refused"}
    await OutboxRelay(engine, broker).relay_once()
    async with uow.begin() as tx:
        tx.add_message("t", "pending")
    # a SENT row an older relay (before migration 0003) left in outbox, sent an hour ago
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    async with engine.begin() as conn:
        await conn.execute(
            insert(outbox).values(
                message_id="legacy", destination="default", topic="t", ordering_key=b"legacy",
                body=b"{}", headers="{}", state=SENT, attempts=1, created_at=hour_ago,
                sent_at=hour_ago,
            )
        )  # fmt: skip
    await OutboxRelay(engine, broker, retention=7200).cleanup()
    assert await _states(engine) == {ARCHIVED: 3, PENDING: 1, DEAD: 1, SENT: 1}
    await OutboxRelay(engine, broker, retention=1800).cleanup()
    assert await _states(engine) == {ARCHIVED: 3, PENDING: 1, DEAD: 1}  # the legacy row
    await asyncio.sleep(0.05)
    await OutboxRelay(engine, broker, retention=0.01).cleanup()
    # pending rows and dead letters are never cleaned up
    assert await _states(engine) == {PENDING: 1, DEAD: 1}


async def test_a_confirmed_row_moves_to_outbox_sent_whole(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    async with uow.begin() as tx:
        tx.add_message("t", {"n": 1}, key="k", headers={"x": "y"})
        tx.add_message("t", {"n": 2})
    async with engine.connect() as conn:
        before = {row.id: row for row in (await conn.execute(select(outbox))).all()}
    started = datetime.now(UTC)
    result = await OutboxRelay(engine, RecordingBroker()).relay_once()
    assert sorted(result.sent) == sorted(before)
    async with engine.connect() as conn:
        after = {row.id: row for row in (await conn.execute(select(outbox_sent))).all()}
    assert await _states(engine) == {ARCHIVED: 2}
    assert after.keys() == before.keys()  # the same ids: the per-key order stays readable
    for row_id, sent in after.items():
        row = before[row_id]
        kept = ("message_id", "destination", "topic", "key", "ordering_key", "body", "headers")
        assert [getattr(sent, name) for name in kept] == [getattr(row, name) for name in kept]
        assert sent.attempts == row.attempts + 1 == 1
        # SQLite returns naive datetimes (stored as UTC)
        assert sent.created_at.replace(tzinfo=UTC) == row.created_at.replace(tzinfo=UTC)
        assert started <= sent.sent_at.replace(tzinfo=UTC) <= datetime.now(UTC)


async def test_the_move_commits_with_the_round_and_rolls_back_with_it(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    async with uow.begin() as tx:
        tx.add_message("t", 1)
        tx.add_message("t", 2)
    options = {"window": 100, "lock_slots": 1024, "delete_sent": False}
    with pytest.raises(RuntimeError):
        async with open_round(engine, **options) as round_:
            claimed = await round_.claim(10)
            await round_.mark_sent([row.id for row in claimed])
            raise RuntimeError("the round failed after the mark")
    assert await _states(engine) == {PENDING: 2}  # nothing moved, nothing lost
    async with open_round(engine, **options) as round_:
        claimed = await round_.claim(1)
        await round_.mark_sent([claimed[0].id])
        assert await _states(engine) == {PENDING: 2}  # another connection: not yet
    assert await _states(engine) == {PENDING: 1, ARCHIVED: 1}


async def test_publish_after_commit_when_disabled(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    broker = RecordingBroker()
    uow = TransactionalOutbox(sessions, enabled=False, brokers={"default": broker})
    async with uow.begin() as tx:
        tx.add_message("t", 1)
        assert broker.published == []  # not before the commit
    assert len(broker.published) == 1
    assert await _states(engine) == {}


async def test_without_outbox_sent_the_relay_publishes_nothing_and_says_why(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A database migrated up to 0002 only: a relay that published, then failed to move the
    # rows, would roll back and publish them again every round.
    async with engine.begin() as conn:
        await conn.run_sync(outbox_sent.drop)
    uow = TransactionalOutbox(sessions)
    async with uow.begin() as tx:
        tx.add_message("t", 1)
    broker = RecordingBroker()
    relay = OutboxRelay(engine, broker)
    with pytest.raises(RuntimeError, match=r"outbox_sent is missing.*0003_outbox_sent"):
        await relay.relay_once()
    assert broker.attempts == 0
    async with engine.connect() as conn:
        assert (await conn.execute(select(outbox.c.state))).scalars().all() == [PENDING]
    assert (await OutboxRelay(engine, broker, retention=0).relay_once()).sent  # needs none
    async with engine.begin() as conn:
        await conn.run_sync(outbox_sent.create)
    async with uow.begin() as tx:
        tx.add_message("t", 2)
    assert (await relay.relay_once()).sent
    assert await _states(engine) == {ARCHIVED: 1}
    # the table is looked up once, not on every round (a round then checks out one
    # connection: its transaction)
    checkouts = []
    event.listen(engine.sync_engine, "checkout", lambda *_: checkouts.append(1))
    for n in range(3):
        async with uow.begin() as tx:
            tx.add_message("t", n)
        checkouts.clear()
        assert (await relay.relay_once()).sent
        assert len(checkouts) == 1
