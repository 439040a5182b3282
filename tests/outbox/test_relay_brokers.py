"""The relay on the real brokers: two replicas on one PostgreSQL outbox keep each key's
order and send nothing twice; a message the broker refuses for good is dead-lettered from
the outbox with the reason while its key goes on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from framework.broker import MESSAGE_ID, Broker, create_broker
from framework.data import DEAD, OutboxRelay, TransactionalOutbox, metadata, outbox, outbox_sent
from tests.services import postgres_url

from ..data.conftest import eventually
from .conftest import ORDER_PAID, BrokerLink, Db


@pytest.fixture
async def broker(link: BrokerLink) -> AsyncIterator[Broker]:
    broker = create_broker(link.kind, **link.options)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


@pytest.fixture
async def tables(db: Db) -> Db:
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return db


def _order_paid(order_id: str, n: int) -> dict[str, object]:
    return {"order_id": order_id, "n": n}


async def test_two_replicas_keep_key_order_and_send_nothing_twice(
    tables: Db, link: BrokerLink, broker: Broker
) -> None:
    if tables.schema is None:
        pytest.skip("SQLite has no row locks: one relay per SQLite database (README)")
    await link.start_reading()
    uow = TransactionalOutbox(async_sessionmaker(tables.engine))
    # the second replica: its own engine (connections), its own broker client
    engine_b = create_async_engine(
        postgres_url(), connect_args={"server_settings": {"search_path": tables.schema}}
    )
    broker_b = create_broker(link.kind, **link.options)
    await broker_b.connect()
    relays = [
        OutboxRelay(tables.engine, broker, batch_size=50, name="relay-a"),
        OutboxRelay(engine_b, broker_b, batch_size=50, name="relay-b"),
    ]
    total, keys = 2000, 40
    try:
        for relay in relays:
            await relay.start()

        async def writer(w: int) -> None:
            for n in range(w, total, 8):
                async with uow.begin() as tx:
                    tx.add_message(ORDER_PAID, _order_paid(f"k{n % keys}", n), key=f"k{n % keys}")

        await asyncio.gather(*(writer(w) for w in range(8)))
        await eventually(lambda: len(link.seen) >= total, timeout=120)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
    finally:
        for relay in relays:
            await relay.stop(10)
        await broker_b.close()
        await engine_b.dispose()
    assert all(relay.sent > 0 for relay in relays), [relay.sent for relay in relays]
    message_ids = [message_id for _, message_id in link.seen]
    assert len(message_ids) == len(set(message_ids)) == total  # nothing twice, none missing
    # per key, the broker got the messages in outbox id order (the order they committed in;
    # a sent row keeps its id in outbox_sent)
    query = union_all(*(select(table.c.message_id, table.c.id) for table in (outbox, outbox_sent)))
    async with tables.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    position = {row.message_id: row.id for row in rows}
    assert len(position) == total
    by_key: dict[str, list[int]] = {}
    for order_id, message_id in link.seen:
        by_key.setdefault(order_id, []).append(position[message_id])
    for key, ids in by_key.items():
        assert ids == sorted(ids), f"key {key} relayed out of commit order"


async def test_a_permanently_refused_message_is_dead_lettered_with_its_reason(
    tables: Db, link: BrokerLink, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    await link.start_reading()
    uow = TransactionalOutbox(async_sessionmaker(tables.engine))
    async with uow.begin() as tx:
        tx.add_message(ORDER_PAID, _order_paid("o1", 1), key="o1")
        # a header value no bytes encode to (refused by every broker), and on Kafka also a
        # record larger than the producer's max_request_size (1 MiB)
        bad = [tx.add_message(ORDER_PAID, _order_paid("o1", 2), key="o1", headers={"x": "\ud800"})]
        if link.kind == "kafka":
            bad.append(
                tx.add_message(ORDER_PAID, {"order_id": "o1", "pad": "x" * 2_000_000}, key="o1")
            )
        else:  # RabbitMQ: headers larger than one AMQP frame (131,072 bytes by default)
            huge = {"pad": "x" * 200_000}
            bad.append(tx.add_message(ORDER_PAID, _order_paid("o1", 2), key="o1", headers=huge))
        tx.add_message(ORDER_PAID, _order_paid("o1", 3), key="o1")
    relay = OutboxRelay(tables.engine, broker)
    with caplog.at_level(logging.ERROR, "pykratos.data"):
        while (await relay.relay_once()).claimed:
            pass
    await eventually(lambda: len(link.seen) >= 2, timeout=30)
    await asyncio.sleep(0.3)
    assert [json.loads(b)["n"] for b in link.bodies] == [1, 3]  # the key went on, in order
    async with tables.engine.connect() as conn:
        dead = (await conn.execute(select(outbox).where(outbox.c.state == DEAD))).all()
    assert sorted(row.message_id for row in dead) == sorted(bad)
    for row in dead:
        assert row.error  # the reason is kept with the row
        assert json.loads(row.headers)[MESSAGE_ID] == row.message_id
        assert any(row.message_id in r.getMessage() for r in caplog.records)
    reasons = " ".join(row.error for row in dead)
    assert "UnicodeEncodeError" in reasons
    if link.kind == "kafka":
        assert "TooLarge" in reasons
    else:
        assert "MessageTooLargeError" in reasons and "one AMQP frame" in reasons
