"""Database and broker without two separate writes: the transactional outbox and the inbox.

- :class:`TransactionalOutbox` / :class:`UnitOfWork`: business rows and outgoing messages
  commit in one transaction; each message gets a stable ``message-id``.
- :class:`OutboxRelay`: an App server that publishes committed messages with broker
  confirmation, in order per key, across outages, crashes and replicas.
- :func:`idempotent`: broker middleware recording each applied ``message-id`` in ``inbox`` in
  the handler's own transaction, so a redelivery has no second effect.
- :data:`metadata`: the ``outbox`` (pending messages and dead letters), ``outbox_sent``
  (confirmed messages, kept for the relay's ``retention``) and ``inbox`` tables
  (``migrations/`` has the SQL).

Needs the ``data`` extra (SQLAlchemy async with aiosqlite / asyncpg).
"""

from framework.data.claims import ClaimedRow
from framework.data.failures import is_permanent_publish_error
from framework.data.inbox import AlreadyApplied, InboxScope, expire_inbox, idempotent
from framework.data.relay import OutboxRelay, RelayRound
from framework.data.tables import DEAD, PENDING, SENT, inbox, metadata, outbox, outbox_sent
from framework.data.uow import (
    DEFAULT_DESTINATION,
    NOTIFY_CHANNEL,
    OutgoingMessage,
    Transaction,
    TransactionalOutbox,
    UnitOfWork,
)

__all__ = [
    "DEAD",
    "DEFAULT_DESTINATION",
    "NOTIFY_CHANNEL",
    "PENDING",
    "SENT",
    "AlreadyApplied",
    "ClaimedRow",
    "InboxScope",
    "OutboxRelay",
    "OutgoingMessage",
    "RelayRound",
    "Transaction",
    "TransactionalOutbox",
    "UnitOfWork",
    "expire_inbox",
    "idempotent",
    "inbox",
    "is_permanent_publish_error",
    "metadata",
    "outbox",
    "outbox_sent",
]
