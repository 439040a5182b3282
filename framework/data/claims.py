"""One relay round's database side: claim pending ``outbox`` rows, then mark them.

A round is one database transaction: :meth:`Round.claim` takes the oldest pending rows of
ordering keys no other relay holds, :meth:`Round.mark_sent` / :meth:`Round.mark_dead` /
:meth:`Round.mark_failed` record what the broker said, and the commit releases the keys.
:meth:`Round.mark_sent` moves the confirmed rows from ``outbox`` to ``outbox_sent`` (one
statement on PostgreSQL: ``DELETE ... RETURNING`` feeding an ``INSERT``), or deletes them.
Nothing is visible to other relays before the commit; a crash rolls the round back and its
rows are claimed (and published) again.

**PostgreSQL** (raw asyncpg on a pooled connection of the engine: the relay's hot path skips
SQLAlchemy's statement compilation and row processing):

* each ordering key hashes to one of ``lock_slots`` transaction advisory locks
  (``pg_try_advisory_xact_lock(<outbox table oid>, slot)``). A round's first claim takes the
  locks first: the slots of the oldest pending rows (the partial index
  ``ix_outbox_pending_id``), in the order of each slot's oldest row, the free ones, at most
  ``limit``. Then it reads the pending rows of those slots in ``id`` order, up to ``limit``,
  with ``FOR UPDATE``. Since the locks are held before that read's snapshot, a relay holds
  every pending row of its keys from the oldest one on, and another relay (or another round
  of the same relay) skips those keys until the commit: one relay per key at a time, each
  key in ``id`` order. Keys sharing a slot are simply serialized together. (Taking each
  lock during the row scan instead let a relay lock a slot another relay released
  mid-scan, after skipping that slot's older row: the newer row went out first.)
* ``FOR UPDATE`` re-reads a row whose previous holder committed after this statement's
  snapshot (PostgreSQL's READ COMMITTED re-check): a row just moved to ``outbox_sent`` (or
  deleted) is gone and dropped, so a key changing hands never repeats a message.
* the walk looks at most ``window`` pending rows (the oldest ones): a relay whose keys are
  all busy returns early instead of scanning the whole backlog.
* a round holds at most ``min(limit, lock_slots)`` advisory locks. They live in PostgreSQL's
  shared lock table (``max_locks_per_transaction`` x ``max_connections`` entries, 6,400 by
  default, shared with every other lock): keep ``lock_slots`` well below that.
* the round commits with ``synchronous_commit = off``: a mark lost in a PostgreSQL crash
  only means those rows are published again, with the same ``message-id``, which
  at-least-once delivery allows anyway (the inbox de-duplicates); a commit that returned is
  never undone short of a server crash.
* the move, not an ``UPDATE ... SET state = SENT``: that update writes a new version of the
  wide row and, since ``state`` is in the pending index's predicate (no HOT update), a new
  entry in the primary key, ``message_id`` and ``(state, sent_at)`` indexes; the move marks
  the old version deleted (no index write) and inserts a row into ``outbox_sent``, whose two
  indexes take ever-growing values (``id``, ``sent_at``): less than half the update's
  database time per row.
* ``delete_sent``: confirmed rows are deleted instead of moved (a retention of 0: a delete
  writes no new row at all, cheaper still).

**SQLite** has no row or advisory locks: one relay per database (the claim is the oldest
pending rows), through SQLAlchemy Core.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import delete, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from framework.data.tables import DEAD, PENDING, outbox, outbox_sent

__all__ = ["ClaimedRow", "Round", "open_round"]


class ClaimedRow(NamedTuple):
    """An ``outbox`` row taken by a round (the columns the relay publishes from)."""

    id: int
    message_id: str
    destination: str
    topic: str
    key: bytes | None
    ordering_key: bytes
    body: bytes
    headers: str  # JSON object of str -> str


class Round(Protocol):
    """The open transaction of one relay round."""

    async def claim(self, limit: int, after: int = 0) -> list[ClaimedRow]:
        """Take up to ``limit`` pending rows with ``id > after`` (see the module), in ``id``
        order. ``after``: the last id this round already claimed, for its next batch; such
        a batch takes only keys the round already holds (on PostgreSQL), whose older rows
        the round has (writers of a key commit in ``id`` order), never a key another relay
        just let go, whose rows up to ``after`` may still be pending."""
        ...

    async def mark_sent(self, ids: Sequence[int]) -> None:
        """Record rows the broker confirmed: moved to ``outbox_sent`` (``attempts`` counts
        this one, ``sent_at`` is now), or deleted."""
        ...

    async def mark_dead(self, rows: Sequence[tuple[ClaimedRow, str]]) -> None:
        """Dead-letter rows the broker refused for good, with the reason."""
        ...

    async def mark_failed(self, rows: Sequence[tuple[ClaimedRow, str]]) -> None:
        """Count a transient failure on rows that stay pending, with the reason."""
        ...


_COLUMNS = "id, message_id, destination, topic, key, ordering_key, body, headers"
_PG_SLOT = "(hashtext(encode(ordering_key, 'hex')) & 2147483647) % $3"
# A round's first claim locks its slots first, then reads their rows. Candidates: the slots
# of the $1 oldest pending rows ($2 lock slots), in the order of each one's oldest row.
# The candidates are gathered into an array first (an uncorrelated sub-select: run once,
# before any lock), then a lazy filter under a LIMIT over the array's function scan tries
# each lock only until $3 slots are taken. (A filter above a sort or an aggregate may be
# evaluated for every row first, locking slots the round then does not use.)
_PG_LOCK_SLOTS = f"""
SELECT slot FROM unnest(ARRAY(
    SELECT slot FROM (
        SELECT id, {_PG_SLOT.replace("$3", "$2")} AS slot FROM outbox
        WHERE state = {PENDING} ORDER BY id LIMIT $1
    ) oldest
    GROUP BY slot ORDER BY min(id)
)) AS slot
WHERE pg_try_advisory_xact_lock('outbox'::regclass::oid::int, slot)
LIMIT $3"""
# $1 limit, $2 window - 1, $3 lock slots, $4 after, $5 the slots held (bitmap): only rows
# of slots this round holds.
_PG_CLAIM = f"""
SELECT {_COLUMNS}, {_PG_SLOT} FROM outbox
WHERE state = {PENDING}
  AND id > $4
  AND id <= coalesce(
        (SELECT id FROM outbox WHERE state = {PENDING} AND id > $4 ORDER BY id OFFSET $2 LIMIT 1),
        9223372036854775807)
  AND get_bit($5::bytea, {_PG_SLOT}) = 1
ORDER BY id
LIMIT $1
FOR UPDATE"""
_ARCHIVED = "id, message_id, destination, topic, key, ordering_key, body, headers"
_PG_SENT = f"""
WITH sent AS (
    DELETE FROM outbox WHERE id = ANY($1::bigint[])
    RETURNING {_ARCHIVED}, attempts, created_at)
INSERT INTO outbox_sent ({_ARCHIVED}, attempts, created_at, sent_at)
SELECT {_ARCHIVED}, attempts + 1, created_at, $2 FROM sent"""
_PG_DELETE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
_PG_DEAD = f"UPDATE outbox SET state = {DEAD}, attempts = attempts + 1, error = $2 WHERE id = $1"
_PG_FAILED = "UPDATE outbox SET attempts = attempts + 1, error = $2 WHERE id = $1"


class _PostgresRound:
    def __init__(self, pg: Any, *, window: int, lock_slots: int, delete_sent: bool) -> None:
        self._pg = pg  # asyncpg.Connection
        self._window = window
        self._slots = lock_slots
        self._delete = delete_sent
        self._held = bytearray((lock_slots + 7) // 8)  # bit n: this round holds slot n
        self._claimed = False

    async def claim(self, limit: int, after: int = 0) -> list[ClaimedRow]:
        window = max(self._window, limit)
        if not self._claimed:
            # Slots first, rows after: a lock taken while the row scan runs could be one
            # another relay released mid-scan, after the scan skipped an older row of that
            # slot (still pending, not ours), and the round would publish the newer one
            # first. Locked before the scan's snapshot, a slot's oldest pending row is ours.
            self._claimed = True
            for (slot,) in await self._pg.fetch(_PG_LOCK_SLOTS, window, self._slots, limit):
                self._held[slot >> 3] |= 1 << (slot & 7)  # get_bit's order: low bit first
            if not any(self._held):
                return []
        held = bytes(self._held)
        records = await self._pg.fetch(_PG_CLAIM, limit, window - 1, self._slots, after, held)
        return [ClaimedRow._make(record[:8]) for record in records]

    async def mark_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        if self._delete:
            await self._pg.execute(_PG_DELETE, ids)
        else:
            await self._pg.execute(_PG_SENT, ids, datetime.now(UTC))

    async def mark_dead(self, rows: Sequence[tuple[ClaimedRow, str]]) -> None:
        if rows:
            await self._pg.executemany(_PG_DEAD, [(row.id, reason) for row, reason in rows])

    async def mark_failed(self, rows: Sequence[tuple[ClaimedRow, str]]) -> None:
        if rows:
            await self._pg.executemany(_PG_FAILED, [(row.id, reason) for row, reason in rows])


_o = outbox.c
_SELECT = (_o.id, _o.message_id, _o.destination, _o.topic, _o.key, _o.ordering_key, _o.body,
           _o.headers)  # fmt: skip
_ARCHIVE_COLUMNS = [column.name for column in _SELECT] + ["attempts", "created_at", "sent_at"]


class _CoreRound:
    """SQLAlchemy Core, for SQLite (one relay per database: no locks needed)."""

    def __init__(self, conn: AsyncConnection, *, delete_sent: bool) -> None:
        self._conn = conn
        self._delete = delete_sent

    async def claim(self, limit: int, after: int = 0) -> list[ClaimedRow]:
        query = (
            select(*_SELECT).where(_o.state == PENDING, _o.id > after).order_by(_o.id).limit(limit)
        )
        return [ClaimedRow._make(row) for row in (await self._conn.execute(query)).all()]

    async def mark_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        if not self._delete:
            # SQLite cannot feed an INSERT from a DELETE's RETURNING: copy, then delete, in
            # the round's transaction.
            sent_at = literal(datetime.now(UTC), outbox_sent.c.sent_at.type)
            archived = select(*_SELECT, _o.attempts + 1, _o.created_at, sent_at)
            await self._conn.execute(
                insert(outbox_sent).from_select(_ARCHIVE_COLUMNS, archived.where(_o.id.in_(ids)))
            )
        await self._conn.execute(delete(outbox).where(_o.id.in_(ids)))

    async def mark_dead(self, rows: Sequence[tuple[ClaimedRow, str]]) -> None:
        for row, reason in rows:
            await self._conn.execute(
                update(outbox)
                .where(_o.id == row.id)
                .values(state=DEAD, attempts=_o.attempts + 1, error=reason)
            )

    async def mark_failed(self, rows: Sequence[tuple[ClaimedRow, str]]) -> None:
        for row, reason in rows:
            await self._conn.execute(
                update(outbox).where(_o.id == row.id).values(attempts=_o.attempts + 1, error=reason)
            )


@contextlib.asynccontextmanager
async def open_round(
    engine: AsyncEngine, *, window: int, lock_slots: int, delete_sent: bool
) -> AsyncIterator[Round]:
    """Open one round's transaction; commit when the block ends, roll back if it raises.

    ``window``: pending rows a PostgreSQL claim looks at, at most (at least its ``limit``);
    ``lock_slots``: advisory locks the ordering keys hash to; ``delete_sent``: delete
    confirmed rows instead of moving them to ``outbox_sent``. Raises what the driver raises
    (database unreachable); the connection is then discarded rather than returned to the pool.
    """
    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:
            yield _CoreRound(conn, delete_sent=delete_sent)
        return
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        try:
            # One round trip: the round's transaction and its commit mode.
            await pg.execute("BEGIN; SET LOCAL synchronous_commit TO off")  # type: ignore[union-attr]
            yield _PostgresRound(pg, window=window, lock_slots=lock_slots, delete_sent=delete_sent)
            await pg.execute("COMMIT")  # type: ignore[union-attr]
        except BaseException:
            # Rolled back by the server when the connection closes; never pooled half-done.
            await conn.invalidate()
            raise
