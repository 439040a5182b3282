"""The SQL scripts in framework/data/migrations/ build the tables the relay works on, and
0003 moves the SENT rows an older relay left in outbox to outbox_sent."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import framework.data
from framework.data import DEAD, PENDING, SENT, OutboxRelay, outbox, outbox_sent
from tests.data.conftest import RecordingBroker, drop_schema
from tests.services import postgres_url, require_url

MIGRATIONS = Path(framework.data.__file__).parent / "migrations"
# What a relay older than 0003 left: SENT, DEAD and PENDING rows. The blobs are filled in
# by _old_rows (the dialects spell blob literals differently).
_OLD_ROWS = """
INSERT INTO outbox (message_id, destination, topic, key, ordering_key, body, headers, state,
                    attempts, created_at, sent_at, error)
VALUES ('m1', 'default', 't', {k}, {k}, {empty}, '{{}}', {SENT}, 1,
        '2026-01-01 10:00:00+00', '2026-01-01 10:00:01+00', NULL),
       ('m2', 'default', 't', {k}, {k}, {empty}, '{{}}', {DEAD}, 1,
        '2026-01-01 10:00:00+00', NULL, 'refused'),
       ('m3', 'default', 't', {k}, {k}, {empty}, '{{}}', {PENDING}, 0,
        '2026-01-01 10:00:00+00', NULL, NULL),
       ('m4', 'default', 't', NULL, {m4}, {list}, '{{"a": "b"}}', {SENT}, 2,
        '2026-01-01 10:00:00+00', '2026-01-01 10:00:02+00', NULL);
"""


def _old_rows(blob: str) -> str:
    hexes = {"k": "6b", "empty": "7b7d", "m4": "6d34", "list": "5b5d"}
    literals = {name: blob.format(digits) for name, digits in hexes.items()}
    return _OLD_ROWS.format(SENT=SENT, DEAD=DEAD, PENDING=PENDING, **literals)


def _script(number: str, dialect: str) -> str:
    (path,) = MIGRATIONS.glob(f"{number}_*.{dialect}.sql")
    return path.read_text()


@pytest.fixture(params=["sqlite", "postgres"])
async def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A database built by 0001 and 0002, holding :data:`_OLD_ROWS`, then migrated by 0003
    twice (it must be safe to run again)."""
    if request.param == "sqlite":
        path = tmp_path / "migrated.db"
        with sqlite3.connect(path) as db:
            for number in ("0001", "0002"):
                db.executescript(_script(number, "sqlite"))
            db.executescript(_old_rows("X'{}'"))
            for _ in range(2):
                db.executescript(_script("0003", "sqlite"))
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        yield engine
        await engine.dispose()
        return
    require_url(postgres_url(), "PostgreSQL")
    schema = f"pykratos_migrate_{uuid.uuid4().hex[:12]}"
    dsn = postgres_url().replace("postgresql+asyncpg://", "postgresql://")
    pg = await asyncpg.connect(dsn)
    try:
        await pg.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        for number in ("0001", "0002"):
            await pg.execute(_script(number, "postgresql"))
        await pg.execute(_old_rows("'\\x{}'::bytea"))
        for _ in range(2):
            await pg.execute(_script("0003", "postgresql"))
    except BaseException:
        await drop_schema(schema)  # no test runs, so no teardown drops it
        raise
    finally:
        await pg.close()
    engine = create_async_engine(
        postgres_url(), connect_args={"server_settings": {"search_path": schema}}
    )
    yield engine
    await engine.dispose()
    await drop_schema(schema)


async def test_0003_moves_sent_rows_and_leaves_the_others(migrated: AsyncEngine) -> None:
    async with migrated.connect() as conn:
        left = (await conn.execute(select(outbox.c.message_id, outbox.c.state))).all()
        moved = (await conn.execute(select(outbox_sent).order_by(outbox_sent.c.id))).all()
    assert sorted(left) == [("m2", DEAD), ("m3", PENDING)]
    assert [(row.message_id, row.attempts) for row in moved] == [("m1", 1), ("m4", 2)]
    m1, m4 = moved
    assert (m1.key, m1.body, m1.headers) == (b"k", b"{}", "{}")
    assert (m4.key, m4.ordering_key, m4.body, m4.headers) == (None, b"m4", b"[]", '{"a": "b"}')
    assert m1.id < m4.id  # the outbox ids, kept
    assert str(m4.sent_at).startswith("2026-01-01 10:00:02")


async def test_the_relay_works_on_the_migrated_tables(migrated: AsyncEngine) -> None:
    relay = OutboxRelay(migrated, RecordingBroker(), retention=3600)
    assert (await relay.relay_once()).claimed == 1  # m3, the one pending row
    async with migrated.connect() as conn:
        sent = (await conn.execute(select(outbox_sent.c.message_id))).scalars().all()
        states = (await conn.execute(select(outbox.c.state))).scalars().all()
    assert sorted(sent) == ["m1", "m3", "m4"] and states == [DEAD]
    await relay.cleanup()  # the migrated rows were sent in January: past the retention
    async with migrated.connect() as conn:
        sent = (await conn.execute(select(outbox_sent.c.message_id))).scalars().all()
        dead = await conn.scalar(select(func.count()).select_from(outbox))
    assert sent == ["m3"] and dead == 1
