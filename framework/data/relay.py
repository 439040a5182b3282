"""The outbox relay: publishes committed ``outbox`` rows with broker confirmation.

Each round, in one database transaction:

1. **claim** the oldest pending row of each ordering key (a row with no older pending row of
   the same key), up to ``batch_size``, with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, then
   the following pending rows of those keys (``FOR UPDATE``). Another replica skips the
   locked heads, and never sees a locked key's later rows as heads, so each key is relayed
   by one replica at a time, in ``id`` order (the commit order of the writers of that key,
   which serialize on the business row they change);
2. **publish**: keys in parallel (pipelined by the broker client), each key's rows one after
   the other, every ``publish`` awaited until the broker confirmed;
3. **mark** the confirmed rows ``SENT``; a row the broker refused permanently
   (:mod:`framework.data.failures`) becomes ``DEAD`` with the reason in ``error`` and an
   ERROR log line (the outbox's dead letter: the row keeps its body, headers and
   ``message-id`` for an operator to inspect and replay), and the key goes on; a transient
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

Every ``cleanup_interval`` seconds, ``SENT`` rows older than ``retention`` seconds are
deleted, and inbox records older than ``inbox_retention``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    LargeBinary,
    all_,
    any_,
    bindparam,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from framework.broker.batching import BatchingPublisher
from framework.broker.broker import Broker
from framework.broker.processor import describe_exception
from framework.broker.publisher import MAX_DLQ_REASON
from framework.data.failures import is_permanent_publish_error
from framework.data.inbox import expire_inbox
from framework.data.tables import DEAD, PENDING, SENT, outbox
from framework.data.uow import DEFAULT_DESTINATION, NOTIFY_CHANNEL, TransactionalOutbox

__all__ = ["OutboxRelay", "RelayRound"]

_log = logging.getLogger("pykratos.data")
# Rounds smaller than this publish message by message (lower latency, nothing to batch).
_PIPELINE_MIN_ROWS = 64
# A claimed row (SQLAlchemy's Row with the outbox columns as attributes).
_Row = Any
_o = outbox.c
_COLUMNS = (_o.id, _o.message_id, _o.destination, _o.topic, _o.key, _o.ordering_key, _o.body,
            _o.headers)  # fmt: skip


@dataclass(slots=True)
class RelayRound:
    """What one round did."""

    claimed: int = 0
    sent: list[int] = field(default_factory=list)
    dead: list[tuple[_Row, str]] = field(default_factory=list)
    failed: list[tuple[_Row, str]] = field(default_factory=list)


class OutboxRelay:
    """A :class:`~framework.transport.server.Server` that relays the outbox (see the module).

    Args:
        engine: the service's database engine (where ``outbox`` lives).
        brokers: the broker, or destination name -> broker (the default destination is
            ``"default"``). The relay does not connect or close them: place it after the
            broker servers in the App's list, so it starts after they connected and stops
            before they close.
        outbox: the service's :class:`TransactionalOutbox`: its commits wake this relay.
        batch_size: rows claimed per round (heads, and as many following rows).
        poll_interval: seconds between looks when nothing woke the relay.
        listen: on PostgreSQL, ``LISTEN`` for commits (``False``: poll only).
        retention: seconds a ``SENT`` row is kept before it is deleted.
        inbox_retention: seconds an inbox record is kept; ``None`` leaves the inbox alone.
        cleanup_interval: seconds between two clean-ups.
        min_backoff, max_backoff: seconds to wait after a transient failure (doubling).
        is_permanent: classifies a publish error (default
            :func:`~framework.data.failures.is_permanent_publish_error`).
        concurrency: rounds run at once on PostgreSQL (each in its own transaction; the row
            locks share the keys out among them as among replicas); SQLite runs one.
        pipeline: submit a round's rows through the broker's batching publisher
            (:meth:`Broker.batch_publisher <framework.broker.broker.Broker.batch_publisher>`:
            Kafka record batches, Redis ``XADD`` pipelines, many confirms in flight on
            RabbitMQ, NATS and MQTT) in ``id`` order instead of awaiting each key's rows one
            by one: several times the throughput.
            Order per key still holds while the broker confirms; after a transient failure a
            later row of the same key may have been accepted before the failed one is retried
            (as with any pipelining producer without idempotence). ``False``: strict order.
        name: for logs.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        brokers: Broker | Mapping[str, Broker],
        *,
        outbox: TransactionalOutbox | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        listen: bool = True,
        retention: float = 86400.0,
        inbox_retention: float | None = 7 * 86400.0,
        cleanup_interval: float = 60.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        is_permanent: Callable[[BaseException], bool] = is_permanent_publish_error,
        concurrency: int = 1,
        pipeline: bool = True,
        name: str = "outbox-relay",
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if batch_size < 1 or poll_interval <= 0 or min_backoff <= 0 or max_backoff < min_backoff:
            raise ValueError("batch_size >= 1, poll_interval > 0, 0 < min_backoff <= max_backoff")
        self.engine = engine
        self.brokers: dict[str, Broker] = (
            {DEFAULT_DESTINATION: brokers} if isinstance(brokers, Broker) else dict(brokers)
        )
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.listen = listen and engine.dialect.name == "postgresql"
        self.retention = retention
        self.inbox_retention = inbox_retention
        self.cleanup_interval = cleanup_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.is_permanent = is_permanent
        self.pipeline = pipeline
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
        """Claim, publish and mark one batch (see the module docstring)."""
        async with self.engine.begin() as conn:
            rows = await self._claim(conn)
            result = RelayRound(claimed=len(rows))
            if not rows:
                return result
            await self._publish(rows, result)
            await self._mark(conn, result)
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

    async def _claim(self, conn: AsyncConnection) -> Sequence[_Row]:
        earlier = outbox.alias("earlier")
        older_pending = (
            exists()
            .where(earlier.c.ordering_key == _o.ordering_key)
            .where(earlier.c.state == PENDING)
            .where(earlier.c.id < _o.id)
        )
        heads_query = (
            select(*_COLUMNS)
            .where(_o.state == PENDING, ~older_pending)
            .order_by(_o.id)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True, of=outbox)
        )
        heads = (await conn.execute(heads_query)).all()
        if not heads:
            return heads
        # Holding each key's head, this relay owns the key: its later rows are safe to take.
        keys = list({row.ordering_key for row in heads})
        head_ids = [row.id for row in heads]
        if conn.dialect.name == "postgresql":
            # array parameters: one prepared statement whatever the counts
            of_keys: Any = _o.ordering_key == any_(
                bindparam("keys", keys, type_=ARRAY(LargeBinary))
            )
            not_heads: Any = _o.id != all_(bindparam("heads", head_ids, type_=ARRAY(BigInteger)))
        else:
            of_keys, not_heads = _o.ordering_key.in_(keys), _o.id.not_in(head_ids)
        followers_query = (
            select(*_COLUMNS)
            .where(_o.state == PENDING, of_keys, not_heads)
            .order_by(_o.id)
            .limit(self.batch_size)
            .with_for_update(of=outbox)
        )
        followers = (await conn.execute(followers_query)).all()
        return sorted([*heads, *followers], key=lambda row: row.id)

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

    def _can_pipeline(self, row: _Row) -> bool:
        if self._batcher(row.destination) is None:
            return False
        options = getattr(self.brokers.get(row.destination), "options", None)
        limit = getattr(options, "max_request_size", None)
        # headers and framing are small next to this margin
        return not isinstance(limit, int) or len(row.body) + len(row.headers) < limit // 2

    def _fail(self, row: _Row, exc: BaseException, result: RelayRound) -> bool:
        """Record ``row``'s failure; True when it is permanent (dead-lettered)."""
        reason = describe_exception(exc)[:MAX_DLQ_REASON]
        if self.is_permanent(exc):
            result.dead.append((row, reason))
            return True
        result.failed.append((row, reason))
        return False

    async def _publish(self, rows: Sequence[_Row], result: RelayRound) -> None:
        by_key: dict[bytes, list[_Row]] = {}
        pipelined: list[tuple[_Row, asyncio.Future[Any]]] = []
        # A key with a row the batching publisher cannot take (no batcher for its broker, or
        # a record near the producer's size limit, which only publish() checks) is published
        # one by one, all its rows: one path per key keeps its order.
        # A small round goes one by one too: the batching publisher's flush interval would
        # only add latency where there is nothing to batch.
        if len(rows) < _PIPELINE_MIN_ROWS:
            strict = {row.ordering_key for row in rows}
        else:
            strict = {row.ordering_key for row in rows if not self._can_pipeline(row)}
        for row in rows:  # in id order
            batcher = None if row.ordering_key in strict else self._batcher(row.destination)
            if batcher is None:
                by_key.setdefault(row.ordering_key, []).append(row)
                continue
            try:
                future = await batcher.submit(
                    row.topic, row.body, key=row.key, headers=json.loads(row.headers)
                )
            except Exception as exc:
                self._fail(row, exc, result)
                continue
            pipelined.append((row, future))

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
                    if self._fail(row, exc, result):
                        continue  # this message is refused for good; the key goes on
                    return  # keep the key's order: its later rows wait for this one
                result.sent.append(row.id)

        await asyncio.gather(*(publish_key(key_rows) for key_rows in by_key.values()))
        for row, future in pipelined:
            try:
                await future
            except Exception as exc:
                self._fail(row, exc, result)
            else:
                result.sent.append(row.id)

    async def _mark(self, conn: AsyncConnection, result: RelayRound) -> None:
        now = datetime.now(UTC)
        if result.sent:
            if conn.dialect.name == "postgresql":
                # one array parameter: the same prepared statement whatever the count
                sent: Any = _o.id == any_(bindparam("sent", result.sent, type_=ARRAY(BigInteger)))
            else:
                sent = _o.id.in_(result.sent)
            await conn.execute(
                update(outbox)
                .where(sent)
                .values(state=SENT, sent_at=now, attempts=_o.attempts + 1, error=None)
            )
        for row, reason in result.dead:
            await conn.execute(
                update(outbox)
                .where(_o.id == row.id)
                .values(state=DEAD, attempts=_o.attempts + 1, error=reason)
            )
            _log.error(
                "%s: dead-lettered outbox message %s to %r (row %d): %s",
                self.name,
                row.message_id,
                row.topic,
                row.id,
                reason,
                extra={"message_id": row.message_id, "topic": row.topic, "outbox_id": row.id},
            )
        for row, reason in result.failed:
            await conn.execute(
                update(outbox).where(_o.id == row.id).values(attempts=_o.attempts + 1, error=reason)
            )

    async def _cleanup(self) -> None:
        try:
            cutoff = datetime.now(UTC) - timedelta(seconds=self.retention)
            async with self.engine.begin() as conn:
                removed = await conn.execute(
                    delete(outbox).where(_o.state == SENT, _o.sent_at < cutoff)
                )
            expired = 0
            if self.inbox_retention is not None:
                expired = await expire_inbox(self.engine, self.inbox_retention)
            if removed.rowcount or expired:
                _log.debug(
                    "%s: removed %d sent row(s), %d inbox record(s)",
                    self.name,
                    removed.rowcount,
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
