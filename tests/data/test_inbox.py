"""The inbox: a message-id is applied once, in the handler's own transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framework.broker import MESSAGE_ID
from framework.data import TransactionalOutbox, expire_inbox, idempotent, inbox
from framework.transport.context import Transport, transport_scope
from tests.data.conftest import items


def _deliver(handler, message_id: str | None):  # type: ignore[no-untyped-def]
    headers = {MESSAGE_ID: message_id} if message_id else {}

    async def run() -> object:
        with transport_scope(Transport("test", "t", request_headers=headers)):
            return await handler("payload")

    return run()


async def _count(engine: AsyncEngine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_redelivered_message_has_no_second_effect(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    calls = 0

    async def handler(_: object) -> str:
        nonlocal calls
        calls += 1
        async with uow.begin() as tx:
            # a second insert of the same id would fail: the skip is what keeps this green
            await tx.session.execute(insert(items).values(id="once"))
            tx.add_message("done", "once")
        return "applied"

    handle = idempotent("svc.t")(handler)
    assert await _deliver(handle, "m-1") == "applied"
    assert await _deliver(handle, "m-1") is None  # skipped, acknowledged as handled
    assert calls == 2  # the handler ran, its transaction was refused before any write
    assert await _count(engine, items) == 1
    assert await _count(engine, inbox) == 1
    # another consumer of the same message applies it for itself
    async with uow.begin() as tx:
        await tx.session.execute(items.delete())
    assert await _deliver(idempotent("other")(handler), "m-1") == "applied"


async def test_a_failed_handler_rolls_back_its_inbox_record(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    fail = True

    async def handler(_: object) -> None:
        async with uow.begin() as tx:
            await tx.session.execute(insert(items).values(id="x"))
            if fail:
                raise RuntimeError("boom")

    handle = idempotent("svc", uow)(handler)
    with pytest.raises(RuntimeError):
        await _deliver(handle, "m-2")
    assert await _count(engine, inbox) == 0 and await _count(engine, items) == 0
    fail = False
    await _deliver(handle, "m-2")  # the retry applies it
    assert await _count(engine, inbox) == 1 and await _count(engine, items) == 1


async def test_concurrent_duplicates_apply_once(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    applied = 0

    async def handler(_: object) -> None:
        nonlocal applied
        async with uow.begin() as tx:
            await tx.session.execute(insert(items).values(id=f"row{applied}"))
            await asyncio.sleep(0.05)  # overlap the duplicates' transactions
        applied += 1

    handle = idempotent("svc", uow)(handler)
    results = await asyncio.gather(
        *(_deliver(handle, "m-3") for _ in range(3)), return_exceptions=True
    )
    # SQLite serializes writers (a loser may see "database is locked" and be retried by the
    # broker); on any database, at most one applies it.
    assert applied == 1, results
    assert await _count(engine, items) == 1


async def test_messages_without_id_are_handled_and_handlers_without_transaction_recorded(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)
    calls = 0

    async def handler(_: object) -> None:
        nonlocal calls
        calls += 1

    handle = idempotent("svc", uow)(handler)
    await _deliver(handle, None)
    await _deliver(handle, None)
    assert calls == 2 and await _count(engine, inbox) == 0
    await _deliver(handle, "m-4")
    assert await _count(engine, inbox) == 1


async def test_old_records_expire(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    uow = TransactionalOutbox(sessions)

    async def handler(_: object) -> None:
        async with uow.begin():
            pass

    handle = idempotent("svc", uow)(handler)
    for n in range(3):
        await _deliver(handle, f"old-{n}")
    await _deliver(handle, "new")
    async with engine.begin() as conn:
        await conn.execute(
            update(inbox)
            .where(inbox.c.message_id.like("old-%"))
            .values(applied_at=datetime.now(UTC) - timedelta(days=8))
        )
    assert await expire_inbox(engine, retention=7 * 86400) == 3
    assert await _count(engine, inbox) == 1
