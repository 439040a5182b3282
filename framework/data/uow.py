"""The unit of work: business rows and outgoing messages in one database transaction.

Business code sees :class:`UnitOfWork` (``add_message``), never SQLAlchemy. The data layer
opens the transaction with :meth:`TransactionalOutbox.begin`, binds its repositories to
:attr:`Transaction.session`, and returns an object that is both its repositories and a
:class:`UnitOfWork`::

    async with outbox.begin() as tx:                 # one database transaction
        tx.session.add(OrderRow(...))                # the service's rows
        tx.add_message("order-paid", event, key=order_id)
    # committed: the row and the message both, or (an exception) neither

Each message gets its ``message-id`` header (:data:`~framework.broker.message.MESSAGE_ID`)
when it is added; it is stored with the row, so every relay attempt, redelivery and dead
letter carries the same id. The message becomes an ``outbox`` row inserted at commit, and
:class:`~framework.data.relay.OutboxRelay` publishes it after the commit. On PostgreSQL the
transaction also sends ``NOTIFY`` on :data:`NOTIFY_CHANNEL`, delivered only if it commits,
which wakes the relay at once.

With ``enabled=False`` there is no outbox: the messages are published after the commit,
straight through the brokers (the classic two-step write, which can lose a message if the
process dies in between; kept for services that choose it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from framework.broker.broker import Broker
from framework.broker.codec import Codec, JsonCodec
from framework.broker.message import MESSAGE_ID, check_headers
from framework.data.inbox import current_inbox_scope, record
from framework.data.tables import PENDING, outbox
from framework.tracing.propagation import inject

__all__ = [
    "DEFAULT_DESTINATION",
    "NOTIFY_CHANNEL",
    "OutgoingMessage",
    "Transaction",
    "TransactionalOutbox",
    "UnitOfWork",
]

#: The destination (broker) a message goes to unless told otherwise.
DEFAULT_DESTINATION = "default"
#: PostgreSQL ``LISTEN``/``NOTIFY`` channel that wakes the relay after a commit.
NOTIFY_CHANNEL = "pykratos_outbox"


class UnitOfWork(Protocol):
    """What business code sees of a transaction: it can add messages to it.

    A service's own unit of work extends it with its repositories (``tx.orders``).
    """

    def add_message(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        destination: str = DEFAULT_DESTINATION,
    ) -> str:
        """Add a message, published if and only if the transaction commits; return its
        ``message-id``."""
        ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message added to a transaction: encoded, with its final headers."""

    message_id: str
    destination: str
    topic: str
    body: bytes
    key: bytes | None
    headers: dict[str, str]


def _key_bytes(key: str | bytes | int | None) -> bytes | None:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, int):
        return str(key).encode("ascii")
    return key


class Transaction:
    """One open transaction of a :class:`TransactionalOutbox` (a :class:`UnitOfWork`).

    Attributes:
        session: the SQLAlchemy session of the transaction; repositories bind to it and must
            not commit it themselves.
        messages: the messages added so far, in order.
    """

    def __init__(self, session: AsyncSession, codec: Codec) -> None:
        self.session = session
        self.messages: list[OutgoingMessage] = []
        self._codec = codec

    def add_message(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        destination: str = DEFAULT_DESTINATION,
    ) -> str:
        """Encode ``payload`` and queue it for this transaction; return its ``message-id``.

        A ``message-id`` already in ``headers`` is kept (a caller deriving ids itself);
        otherwise a random one (32 hex digits) is set. The current trace context is written
        into the headers now, so the consumer's span continues this request's trace.
        Raises what the codec raises for a payload it cannot encode, and ``TypeError`` for
        a header name or value that is not a ``str`` (before anything is queued: a row the
        relay could never publish would otherwise wait in the table).
        """
        check_headers(headers)  # as publish does
        merged = inject(dict(headers or {}))
        message_id = merged.setdefault(MESSAGE_ID, uuid.uuid4().hex)
        self.messages.append(
            OutgoingMessage(
                message_id=message_id,
                destination=destination,
                topic=topic,
                body=self._codec.encode(payload),
                key=_key_bytes(key),
                headers=merged,
            )
        )
        return message_id


class TransactionalOutbox:
    """Opens transactions whose messages are stored in ``outbox`` and relayed after commit.

    Args:
        sessions: the service's session factory (bound to its engine).
        codec: encodes payloads (JSON by default, like :class:`~framework.broker.Publisher`).
        enabled: ``False`` publishes after commit instead (see the module docstring); then
            ``brokers`` must name a broker per destination.
        brokers: destination name -> broker, for ``enabled=False``.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        codec: Codec | None = None,
        enabled: bool = True,
        brokers: Mapping[str, Broker] | None = None,
    ) -> None:
        self.sessions = sessions
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.enabled = enabled
        self.brokers = dict(brokers or {})
        self._commit_listeners: list[Callable[[], None]] = []
        if not enabled and not self.brokers:
            raise ValueError("a TransactionalOutbox with enabled=False needs brokers")

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each commit that stored messages (the relay's wake-up)."""
        self._commit_listeners.append(listener)

    @property
    def engine(self) -> AsyncEngine:
        """The engine the sessions are bound to."""
        bind = self.sessions.kw.get("bind")
        if not isinstance(bind, AsyncEngine):
            raise TypeError("the session factory is not bound to an AsyncEngine")
        return bind

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Transaction]:
        """Open a transaction; commit it (rows and messages) when the block ends, roll it
        back if the block raises.

        Inside a message handled under :func:`~framework.data.inbox.idempotent`, the first
        transaction records the message in ``inbox`` before anything else and raises
        :class:`~framework.data.inbox.AlreadyApplied` if it was applied already.
        """
        scope = current_inbox_scope.get()
        own_record = scope is not None and not scope.recorded
        async with self.sessions() as session:
            try:
                async with session.begin():
                    if own_record:
                        assert scope is not None
                        await record(await session.connection(), scope)
                    tx = Transaction(session, self.codec)
                    yield tx
                    if tx.messages and self.enabled:
                        await self._store(session, tx.messages)
            except BaseException:
                if own_record:
                    assert scope is not None
                    scope.recorded = False  # rolled back with the handler's work
                raise
        if tx.messages and self.enabled:
            for listener in self._commit_listeners:
                listener()
        if tx.messages and not self.enabled:
            for message in tx.messages:
                await self.brokers[message.destination].publish(
                    message.topic, message.body, key=message.key, headers=message.headers
                )

    async def _store(self, session: AsyncSession, messages: list[OutgoingMessage]) -> None:
        now = datetime.now(UTC)
        rows = [
            {
                "message_id": m.message_id,
                "destination": m.destination,
                "topic": m.topic,
                "key": m.key,
                "ordering_key": m.key if m.key is not None else m.message_id.encode(),
                "body": m.body,
                # ensure_ascii keeps surrogate-escaped header bytes exact (\\udcxx escapes)
                "headers": json.dumps(m.headers),
                "state": PENDING,
                "attempts": 0,
                "created_at": now,
            }
            for m in messages
        ]
        await session.execute(insert(outbox), rows)
        if self.engine.dialect.name == "postgresql":
            # Delivered at commit, and only if the transaction commits.
            await session.execute(
                text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL}
            )
