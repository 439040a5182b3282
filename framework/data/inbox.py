"""The idempotent consumer: the ``inbox`` records each applied ``message-id``.

:func:`idempotent` is a broker middleware. For each message carrying a ``message-id`` header
(:data:`~framework.broker.message.MESSAGE_ID`) it opens an *inbox scope*; the first
transaction the handler opens through :class:`~framework.data.uow.TransactionalOutbox`
inserts ``(consumer, message-id)`` into ``inbox`` **in that same transaction**, before the
handler's own writes. So the record commits exactly when the handler's database work
commits:

- the id is already there (a redelivery after a crash, a duplicate relay): the transaction
  is rolled back at once and the message is acknowledged as handled, with no second effect;
- the handler fails: its work and the record roll back together, and the retry applies it.

A handler that opens no transaction gets the record in a transaction of its own after it
returned when the middleware was given the outbox (at-least-once: a crash between the two
repeats it), and no record otherwise. A message without the header
(a foreign producer) is handled without de-duplication. Entries older than the retention
window are deleted by :meth:`Inbox.expire` (the relay calls it on its cleanup interval).
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from framework.broker.message import MESSAGE_ID
from framework.data.tables import inbox
from framework.middleware.core import Handler, Middleware
from framework.transport.context import from_context

if TYPE_CHECKING:
    from framework.data.uow import TransactionalOutbox

__all__ = ["AlreadyApplied", "InboxScope", "current_inbox_scope", "expire_inbox", "idempotent"]

_log = logging.getLogger("pykratos.data")


class AlreadyApplied(Exception):
    """Raised inside a transaction whose inbox record exists already: the message was
    applied before. :func:`idempotent` turns it into a successful, effect-free handling."""


@dataclass(slots=True)
class InboxScope:
    """The message being handled under :func:`idempotent`."""

    consumer: str
    message_id: str
    recorded: bool = False


current_inbox_scope: contextvars.ContextVar[InboxScope | None] = contextvars.ContextVar(
    "pykratos_inbox_scope", default=None
)


async def record(conn: AsyncConnection, scope: InboxScope) -> None:
    """Insert ``scope``'s record in the transaction of ``conn``; raise :class:`AlreadyApplied`
    if it exists (``ON CONFLICT DO NOTHING``: a concurrent duplicate waits for the first to
    commit or roll back, as PostgreSQL's unique index does)."""
    dialect = conn.dialect.name
    values = {
        "consumer": scope.consumer,
        "message_id": scope.message_id,
        "applied_at": datetime.now(UTC),
    }
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(inbox).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(inbox).values(values).on_conflict_do_nothing()
    else:  # portable fallback: the primary key refuses the duplicate
        stmt = insert(inbox).values(values)
    result = await conn.execute(stmt)
    if result.rowcount == 0:
        raise AlreadyApplied(f"{scope.consumer}: message {scope.message_id} already applied")
    scope.recorded = True


def idempotent(consumer: str, outbox: TransactionalOutbox | None = None) -> Middleware:
    """Broker middleware: apply each ``message-id`` at most once for ``consumer``.

    The handler's transactions must be opened through a
    :class:`~framework.data.uow.TransactionalOutbox` (that is how the record joins them).

    Args:
        consumer: the name records are kept under (e.g. ``"order-svc.payment-success"``):
            distinct consumers of one message each apply it once.
        outbox: where to record a message whose handler opened no transaction (else such a
            message is not recorded).
    """

    def middleware(handler: Handler) -> Handler:
        async def handle(request: Any) -> Any:
            transport = from_context()
            message_id = transport.request_headers.get(MESSAGE_ID) if transport else None
            if not message_id:
                return await handler(request)
            scope = InboxScope(consumer, message_id)
            token = current_inbox_scope.set(scope)
            try:
                reply = await handler(request)
            except AlreadyApplied:
                _log.info(
                    "%s: skipping message %s, already applied",
                    consumer,
                    message_id,
                    extra={"consumer": consumer, "message_id": message_id},
                )
                return None
            finally:
                current_inbox_scope.reset(token)
            if not scope.recorded and outbox is not None:
                try:
                    async with outbox.engine.begin() as conn:
                        await record(conn, scope)
                except AlreadyApplied:
                    pass  # a concurrent duplicate ran the same transaction-less handler
            return reply

        return handle

    return middleware


async def expire_inbox(engine: AsyncEngine, retention: float) -> int:
    """Delete inbox records older than ``retention`` seconds; return how many.

    A redelivery older than the window is applied again: choose a window longer than any
    redelivery can take (consumer lag, broker retention of unacknowledged messages).
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    async with engine.begin() as conn:
        result = await conn.execute(delete(inbox).where(inbox.c.applied_at < cutoff))
    return int(result.rowcount)
