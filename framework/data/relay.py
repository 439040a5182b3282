"""The outbox relay: publishes committed ``outbox`` rows with broker confirmation.

Each round, in one database transaction (:mod:`framework.data.claims`):

1. **claim** up to ``batch_size`` pending rows in ``id`` order, skipping the ordering keys
   another relay holds. On PostgreSQL each key hashes to one of ``lock_slots`` transaction
   advisory locks: a round holds all the pending rows of its keys from the oldest one on,
   and another replica (or concurrent round) skips those keys until the commit, so each key
   is relayed by one relay at a time, in ``id`` order (the commit order of the writers of
   that key, which serialize on the business row they change);
2. **publish**: through the broker's batching publisher (``batch_publisher``), submitted in
   ``id`` order and sent at once; keys the batching publisher cannot take (``pipeline=False``,
   no batching publisher, a record near the size limit) are published key by key, each
   ``publish`` awaited until the broker confirmed before the key's next one;
3. **mark** the confirmed rows sent: moved from ``outbox`` to ``outbox_sent`` (deleted at
   once when ``retention`` is 0), in chunks while the broker confirms the rest; a row the
   broker refused permanently (:mod:`framework.data.failures`) becomes ``DEAD`` with the
   reason in ``error`` and an ERROR log line (the outbox's dead letter: the row stays in
   ``outbox`` with its body, headers and ``message-id`` for an operator to inspect and
   replay by setting ``state`` back to ``PENDING``), and the key goes on; a transient
   failure leaves the row and the rest of its key pending, and the relay backs off
   (``min_backoff`` doubling to ``max_backoff``) before trying again. Nothing is dropped
   while a broker is down, and requests never wait for it: they only insert rows.

A crash between publish and mark publishes those rows again on restart (at-least-once, with
the same ``message-id``: the inbox de-duplicates). SQLite has no row locks: run one relay per
SQLite database (the embedded default is one process anyway).

Wake-ups: a commit through the service's :class:`~framework.data.uow.TransactionalOutbox`
wakes the relay of the same process at once; on PostgreSQL, ``LISTEN`` on
:data:`~framework.data.uow.NOTIFY_CHANNEL` wakes every replica after any commit; and every
``poll_interval`` seconds the relay looks anyway (SQLite across processes, a lost listener
connection, rows left by a crash).

Every ``cleanup_interval`` seconds, ``outbox_sent`` rows sent more than ``retention`` seconds
ago are deleted (and ``SENT`` rows a relay older than migration ``0003`` left in ``outbox``),
and inbox records older than ``inbox_retention``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import delete, inspect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from framework.broker.batching import BatchingPublisher
from framework.broker.broker import Broker
from framework.broker.processor import describe_exception
from framework.broker.publisher import MAX_DLQ_REASON
from framework.checks import check_counts, check_seconds
from framework.data.claims import ClaimedRow, Round, open_round
from framework.data.failures import is_permanent_publish_error
from framework.data.inbox import expire_inbox
from framework.data.tables import SENT, outbox, outbox_sent
from framework.data.uow import DEFAULT_DESTINATION, NOTIFY_CHANNEL, TransactionalOutbox

__all__ = ["OutboxRelay", "RelayRound"]

_log = logging.getLogger("pykratos.data")
# Confirmed rows are marked in chunks of this many while later ones are still in flight.
_MARK_CHUNK = 1000
# A PostgreSQL claim looks at most this many batches deep into the pending rows.
_WINDOW_BATCHES = 4
_Row = ClaimedRow
_T = TypeVar("_T")
_o = outbox.c


@dataclass(slots=True)
class RelayRound:
    """What one round did: rows ``claimed`` (all its batches), the ids ``sent`` (confirmed),
    the rows ``dead`` (dead-lettered) and ``failed`` (transient failure, still pending), each
    with its reason."""

    claimed: int = 0
    sent: list[int] = field(default_factory=list)
    dead: list[tuple[_Row, str]] = field(default_factory=list)
    failed: list[tuple[_Row, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Batch:
    """One claimed batch in flight."""

    pipelined: list[tuple[_Row, asyncio.Future[Any]]] = field(default_factory=list)
    strict: dict[bytes, list[_Row]] = field(
        default_factory=dict
    )  # key -> rows, published at settle
    flushes: list[asyncio.Future[None]] = field(default_factory=list)


class _Serial:
    """A round's database calls, run one after the other (they share one connection) in
    the background, so that they overlap the publishing. A failed call fails the later ones;
    :meth:`drain` raises the first failure."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Future[Any]] = []

    def run(self, call: Callable[[], Awaitable[_T]]) -> asyncio.Future[_T]:
        previous = self._tasks[-1] if self._tasks else None

        async def step() -> _T:
            if previous is not None:
                await previous
            return await call()

        task = asyncio.ensure_future(step())
        self._tasks.append(task)
        return task

    async def drain(self) -> None:
        if self._tasks:
            await self._tasks[-1]

    async def close(self) -> None:
        """Cancel what has not run (the round failed) and collect every outcome."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(slots=True)
class _RoundState:
    """What a round's batches share."""

    db: _Serial
    limits: dict[str, int | None] = field(default_factory=dict)  # destination -> size limit
    strict: set[bytes] = field(default_factory=set)  # keys published one by one this round
    stalled: set[bytes] = field(default_factory=set)  # keys with a transient failure
    unsettled: list[_Batch] = field(default_factory=list)  # submitted, not yet settled


async def _abandon(batch: _Batch) -> None:
    """Let a batch of a failed round finish at the broker without anyone waiting for its
    results (its rows stay pending: the next round publishes them again)."""
    await asyncio.gather(*batch.flushes, return_exceptions=True)
    for _, future in batch.pipelined:
        future.add_done_callback(lambda done: done.cancelled() or done.exception())


class OutboxRelay:
    """A :class:`~framework.transport.server.Server` that relays the outbox (see the module).

    Args:
        engine: the service's database engine (where ``outbox`` lives).
        brokers: the broker, or destination name -> broker (the default destination is
            ``"default"``). The relay does not connect or close them: place it after the
            broker servers in the App's list, so it starts after they connected and stops
            before they close.
        outbox: the service's :class:`TransactionalOutbox`: its commits wake this relay.
        batch_size: rows claimed at once.
        round_batches: batches a round claims at most, in one transaction: the next batch is
            claimed while the broker confirms the previous one (a full batch only).
        poll_interval: seconds between looks when nothing woke the relay.
        listen: on PostgreSQL, ``LISTEN`` for commits (``False``: poll only).
        retention: seconds a sent row is kept in ``outbox_sent`` before it is deleted; 0
            deletes each row in the round that published it (nothing archived, the cheapest
            mark).
        inbox_retention: seconds an inbox record is kept; ``None`` leaves the inbox alone.
        cleanup_interval: seconds between two clean-ups.
        min_backoff, max_backoff: seconds to wait after a transient failure (doubling).
        is_permanent: classifies a publish error (default
            :func:`~framework.data.failures.is_permanent_publish_error`).
        concurrency: rounds run at once on PostgreSQL (each in its own transaction; the key
            locks share the keys out among them as among replicas); SQLite runs one.
        lock_slots: PostgreSQL advisory locks the ordering keys hash to (keys sharing one are
            relayed by one relay at a time together). A round holds at most
            ``min(batch_size, lock_slots)`` of them in PostgreSQL's shared lock table
            (``max_locks_per_transaction`` x ``max_connections`` entries for all locks).
        pipeline: submit a round's rows through the broker's batching publisher
            (:meth:`Broker.batch_publisher <framework.broker.broker.Broker.batch_publisher>`:
            Kafka record batches, Redis ``XADD`` pipelines, many confirms in flight on
            RabbitMQ, NATS and MQTT) in ``id`` order instead of awaiting each key's rows one
            by one: several times the throughput.
            Order per key still holds while the broker confirms; after a transient failure a
            later row of the same key may have been accepted before the failed one is retried
            (as with any pipelining producer without idempotence). ``False``: strict order.
        name: for logs.

    Raises ``ValueError`` naming the argument for a count that is not an int >= 1 or a
    number of seconds that is not finite (intervals and backoffs ``> 0``, retentions
    ``>= 0``) or above :data:`~framework.checks.MAX_SECONDS` (a date that far back overflows
    the clean-up), and for a broker that publishes with ``acks='none'``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        brokers: Broker | Mapping[str, Broker],
        *,
        outbox: TransactionalOutbox | None = None,
        batch_size: int = 500,
        round_batches: int = 4,
        poll_interval: float = 1.0,
        listen: bool = True,
        retention: float = 86400.0,
        inbox_retention: float | None = 7 * 86400.0,
        cleanup_interval: float = 60.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        is_permanent: Callable[[BaseException], bool] = is_permanent_publish_error,
        concurrency: int = 1,
        lock_slots: int = 1024,
        pipeline: bool = True,
        name: str = "outbox-relay",
    ) -> None:
        check_counts(
            "OutboxRelay",
            batch_size=batch_size,
            round_batches=round_batches,
            concurrency=concurrency,
        )
        check_counts("OutboxRelay", maximum=2**31 - 1, lock_slots=lock_slots)  # an int4 key
        # Seconds must be finite and bounded: a NaN passes every comparison (and the relay's
        # sleeps and clean-up cutoffs then fail or spin), a huge one overflows them.
        check_seconds(
            "OutboxRelay",
            poll_interval=poll_interval,
            cleanup_interval=cleanup_interval,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
        )
        check_seconds("OutboxRelay", allow_zero=True, retention=retention)
        if inbox_retention is not None:
            check_seconds("OutboxRelay", allow_zero=True, inbox_retention=inbox_retention)
        if max_backoff < min_backoff:
            raise ValueError(
                f"OutboxRelay: max_backoff ({max_backoff!r}) must be >= min_backoff "
                f"({min_backoff!r})"
            )
        self.engine = engine
        self.brokers: dict[str, Broker] = (
            {DEFAULT_DESTINATION: brokers} if isinstance(brokers, Broker) else dict(brokers)
        )
        for destination, broker in self.brokers.items():
            # A row is marked sent once its publish returned: a fire-and-forget broker would
            # let rows be marked (or deleted) that no broker ever stored.
            if getattr(broker, "default_acks", "all") == "none":
                raise ValueError(
                    f"outbox destination {destination!r}: its broker publishes with acks='none' "
                    "(fire-and-forget), so the relay could mark rows sent that were lost; "
                    "configure that broker with acks 'leader' or 'all'"
                )
        self.batch_size = batch_size
        self.round_batches = round_batches
        self.poll_interval = poll_interval
        self.listen = listen and engine.dialect.name == "postgresql"
        self.retention = retention
        self.inbox_retention = inbox_retention
        self.cleanup_interval = cleanup_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.is_permanent = is_permanent
        self.pipeline = pipeline
        self.lock_slots = lock_slots
        self.concurrency = concurrency if engine.dialect.name == "postgresql" else 1
        self.name = name
        # destination -> the broker's batching publisher
        self._batchers: dict[str, BatchingPublisher] = {}
        #: counters since start: rows confirmed, rows dead-lettered, transient failures
        self.sent = 0
        self.dead = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._listener: AsyncConnection | None = None
        self._outage = False
        self._next_cleanup = 0.0
        self._archive_found = False
        if outbox is not None:
            outbox.add_commit_listener(self.wake)

    @property
    def endpoint(self) -> str:
        return f"outbox+{self.engine.dialect.name}://{self.engine.url.database or ''}"

    def wake(self) -> None:
        """Look for rows now (called after a commit)."""
        self._wake.set()

    async def start(self) -> None:
        """Start listening (PostgreSQL) and relaying; returns once the loop runs."""
        if self.listen:
            await self._start_listener()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop_intake(self) -> None:
        """Nothing to refuse: rows committed while the other servers drain are still
        relayed until :meth:`stop`."""

    async def stop(self, timeout: float) -> None:
        """Relay what is pending (until the table is empty, a publish fails, or ``timeout``
        seconds passed), then stop; what is left waits in the table for the next start."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                _log.warning("%s: stop timeout; the rest stays in the outbox", self.name)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._stop_listener()

    # -- loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.min_backoff
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            rounds = await asyncio.gather(
                *(self.relay_once() for _ in range(self.concurrency)), return_exceptions=True
            )
            claimed, failed = 0, False
            for outcome in rounds:
                if isinstance(outcome, BaseException):  # database unreachable, a bug
                    if not isinstance(outcome, Exception):
                        raise outcome
                    failed = True
                    self._report_failure(f"relay round failed: {describe_exception(outcome)}")
                else:
                    claimed += outcome.claimed
                    failed = failed or bool(outcome.failed)
            if failed:
                if self._stopping:
                    return  # drained what we could; the rest waits in the table
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            if claimed:
                continue
            if self._stopping:
                return
            if loop.time() >= self._next_cleanup:
                self._next_cleanup = loop.time() + self.cleanup_interval
                await self._cleanup()
            await self._sleep(self.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        # Ends early on a wake-up (a commit, NOTIFY, stop).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _report_failure(self, what: str) -> None:
        self.failures += 1
        if not self._outage:
            self._outage = True
            _log.warning("%s: %s; retrying with backoff", self.name, what)
        else:
            _log.debug("%s: %s", self.name, what)

    # -- one round -------------------------------------------------------------------------

    async def relay_once(self) -> RelayRound:
        """Claim, publish and mark one round (see the module docstring).

        Raises ``RuntimeError`` before publishing anything while a relay that keeps sent
        rows (``retention`` > 0) finds no ``outbox_sent`` table, and what the driver raises
        (database unreachable).
        """
        if self.retention > 0 and not self._archive_found:
            await self._find_archive()
        async with open_round(
            self.engine,
            window=self.batch_size * _WINDOW_BATCHES,
            lock_slots=self.lock_slots,
            delete_sent=self.retention <= 0,
        ) as tx:
            result = RelayRound()
            state = _RoundState(db=_Serial())
            try:
                rows = await tx.claim(self.batch_size)
                previous: _Batch | None = None
                while rows:
                    result.claimed += len(rows)
                    batch = await self._submit(rows, result, state)
                    # Claim the next batch while the broker confirms this one, unless the
                    # table ran dry, the round is full, or the broker is failing.
                    more = (
                        len(rows) == self.batch_size
                        and result.claimed < self.batch_size * self.round_batches
                        and not result.failed
                        and not self._stopping
                    )
                    claiming = (
                        state.db.run(partial(tx.claim, self.batch_size, after=rows[-1].id))
                        if more
                        else None
                    )
                    if previous is not None:
                        await self._settle(previous, result, state, tx)
                    rows = await claiming if claiming is not None else []
                    previous = batch
                if previous is not None:
                    await self._settle(previous, result, state, tx)
                await state.db.drain()
            finally:
                await state.db.close()
                for batch in state.unsettled:  # the round failed (the database)
                    await _abandon(batch)
            await tx.mark_dead(result.dead)
            await tx.mark_failed(result.failed)
        for row, reason in result.dead:
            _log.error(
                "%s: dead-lettered outbox message %s to %r (row %d): %s",
                self.name,
                row.message_id,
                row.topic,
                row.id,
                reason,
                extra={"message_id": row.message_id, "topic": row.topic, "outbox_id": row.id},
            )
        self.sent += len(result.sent)
        self.dead += len(result.dead)
        if result.failed:
            row, reason = result.failed[0]
            self._report_failure(
                f"publish of {len(result.failed)} message(s) failed (first: "
                f"{row.message_id} to {row.topic!r}: {reason})"
            )
        elif self._outage and result.sent:
            self._outage = False
            _log.info("%s: publishing again", self.name)
        return result

    def _batcher(self, destination: str) -> BatchingPublisher | None:
        """The batching publisher of ``destination``'s broker, or ``None``."""
        if not self.pipeline:
            return None
        batcher = self._batchers.get(destination)
        if batcher is None or batcher.closed:  # closed with its broker: make a new one
            broker = self.brokers.get(destination)
            make = getattr(broker, "batch_publisher", None)
            if make is None:
                return None
            try:
                batcher = self._batchers[destination] = make()
            except Exception:  # not connected yet: publish one by one this round
                return None
        return batcher

    def _pipeline_limit(self, destination: str) -> int | None:
        """The largest body + headers the batching publisher of ``destination`` takes
        (``None``: no batching publisher, publish one by one)."""
        if self._batcher(destination) is None:
            return None
        options = getattr(self.brokers.get(destination), "options", None)
        limit = getattr(options, "max_request_size", None)
        # headers and framing are small next to this margin
        return limit // 2 if isinstance(limit, int) else sys.maxsize

    def _fail(self, row: _Row, exc: BaseException, result: RelayRound, state: _RoundState) -> bool:
        """Record ``row``'s failure; True when it is permanent (dead-lettered)."""
        reason = describe_exception(exc)[:MAX_DLQ_REASON]
        if self.is_permanent(exc):
            result.dead.append((row, reason))
            return True
        result.failed.append((row, reason))
        state.stalled.add(row.ordering_key)
        return False

    async def _submit(self, rows: Sequence[_Row], result: RelayRound, state: _RoundState) -> _Batch:
        """Hand a claimed batch's rows to the batching publishers, in ``id`` order; the rows
        they cannot take wait in the batch for :meth:`_settle`."""
        batch = _Batch()
        # A key with a row the batching publisher cannot take (no batcher for its broker, or
        # a record near the producer's size limit, which only publish() checks) is published
        # one by one, all its rows, for the rest of the round: one path per key keeps its
        # order.
        strict = state.strict
        for destination in {row.destination for row in rows}:
            if destination not in state.limits:
                state.limits[destination] = self._pipeline_limit(destination)
        limits = state.limits
        for row in rows:
            limit = limits[row.destination]
            if limit is None or len(row.body) + len(row.headers) >= limit:
                strict.add(row.ordering_key)
        used = set()
        for row in rows:  # in id order
            if row.ordering_key in state.stalled:
                continue  # an earlier row of the key failed: the rest waits in the table
            if row.ordering_key in strict:
                batch.strict.setdefault(row.ordering_key, []).append(row)
                continue
            batcher = self._batchers[row.destination]
            try:
                future = await batcher.submit(
                    row.topic, row.body, key=row.key, headers=json.loads(row.headers)
                )
            except Exception as exc:
                self._fail(row, exc, result, state)
                continue
            used.add(batcher)
            batch.pipelined.append((row, future))
        # Send now rather than after the batcher's flush interval: a round is all there is.
        batch.flushes = [asyncio.ensure_future(batcher.flush()) for batcher in used]
        state.unsettled.append(batch)
        return batch

    async def _settle(
        self, batch: _Batch, result: RelayRound, state: _RoundState, tx: Round
    ) -> None:
        """Wait for a batch's confirmations, marking them as they come, and publish its
        strict keys."""
        state.unsettled.remove(batch)
        try:
            # Mark confirmed rows while the broker works on the next ones: the database
            # update overlaps the publishing instead of following it.
            confirmed: list[int] = []
            for row, submitted in batch.pipelined:  # in id order
                try:
                    await submitted
                except Exception as exc:
                    self._fail(row, exc, result, state)
                    continue
                confirmed.append(row.id)
                if len(confirmed) >= _MARK_CHUNK:
                    self._mark_sent(confirmed, result, state, tx)
                    confirmed = []
            self._mark_sent(confirmed, result, state, tx)
        finally:
            await asyncio.gather(*batch.flushes, return_exceptions=True)
        sent: list[int] = []

        async def publish_key(key_rows: list[_Row]) -> None:
            for row in key_rows:
                try:
                    broker = self.brokers.get(row.destination)
                    if broker is None:
                        raise LookupError(f"no broker for destination {row.destination!r}")
                    await broker.publish(
                        row.topic, row.body, key=row.key, headers=json.loads(row.headers)
                    )
                except Exception as exc:
                    if self._fail(row, exc, result, state):
                        continue  # this message is refused for good; the key goes on
                    return  # keep the key's order: its later rows wait for this one
                sent.append(row.id)

        await asyncio.gather(
            *(publish_key(rows) for key, rows in batch.strict.items() if key not in state.stalled)
        )
        self._mark_sent(sent, result, state, tx)

    async def _find_archive(self) -> None:
        # Without the table every mark would fail after the publish: the round would roll
        # back and publish the same rows again, round after round.
        async with self.engine.connect() as conn:
            found = await conn.run_sync(lambda sync: inspect(sync).has_table(outbox_sent.name))
        if not found:
            raise RuntimeError(
                "table outbox_sent is missing (where the relay moves sent rows): create it "
                "with framework.data.metadata.create_all, or apply "
                "framework/data/migrations/0003_outbox_sent.*.sql"
            )
        self._archive_found = True  # once: a table does not vanish under a running relay

    @staticmethod
    def _mark_sent(ids: list[int], result: RelayRound, state: _RoundState, tx: Round) -> None:
        """Queue the mark of confirmed rows (it runs while the round goes on)."""
        if ids:
            state.db.run(partial(tx.mark_sent, ids))
            result.sent.extend(ids)

    async def _cleanup(self) -> None:
        try:
            cutoff = datetime.now(UTC) - timedelta(seconds=self.retention)
            async with self.engine.begin() as conn:
                removed = await conn.execute(
                    delete(outbox_sent).where(outbox_sent.c.sent_at < cutoff)
                )
                # Left by a relay older than migration 0003 (which moves them), e.g. during a
                # rolling upgrade or in a database only ever created by metadata.create_all.
                legacy = await conn.execute(
                    delete(outbox).where(_o.state == SENT, _o.sent_at < cutoff)
                )
            expired = 0
            if self.inbox_retention is not None:
                expired = await expire_inbox(self.engine, self.inbox_retention)
            if removed.rowcount or legacy.rowcount or expired:
                _log.debug(
                    "%s: removed %d sent row(s), %d inbox record(s)",
                    self.name,
                    removed.rowcount + legacy.rowcount,
                    expired,
                )
        except Exception as exc:
            _log.warning("%s: clean-up failed: %s", self.name, describe_exception(exc))

    async def cleanup(self) -> None:
        """Run the clean-up now (it also runs every ``cleanup_interval`` seconds)."""
        await self._cleanup()

    # -- PostgreSQL LISTEN -----------------------------------------------------------------

    async def _start_listener(self) -> None:
        try:
            conn = await self.engine.connect()
            raw = await conn.get_raw_connection()
            await raw.driver_connection.add_listener(NOTIFY_CHANNEL, self._on_notify)  # type: ignore[union-attr]
        except Exception as exc:
            _log.warning(
                "%s: cannot LISTEN (%s); polling every %gs",
                self.name,
                describe_exception(exc),
                self.poll_interval,
            )
            return
        self._listener = conn

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _stop_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            raw = await conn.get_raw_connection()
            await raw.driver_connection.remove_listener(NOTIFY_CHANNEL, self._on_notify)  # type: ignore[union-attr]
        with contextlib.suppress(Exception):
            await conn.close()
