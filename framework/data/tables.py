"""The ``outbox``, ``outbox_sent`` and ``inbox`` tables (SQLAlchemy Core, one :data:`metadata`).

Create them like the service's own tables (``await conn.run_sync(metadata.create_all)``
next to the service's ``Base.metadata.create_all``), or apply the SQL scripts shipped in
``framework/data/migrations/`` with the service's migration tool (in order; ``0003`` moves the
``SENT`` rows an older relay left in ``outbox``).

``outbox`` holds the messages still to publish (``PENDING``) and the dead letters (``DEAD``:
the broker refused them permanently; ``error`` says why; set ``state`` back to ``PENDING`` to
publish one again). A message the broker confirmed is *sent*: the relay moves its row from
``outbox`` to ``outbox_sent`` in the transaction that records the confirmation (same ``id``,
``message_id``, body and headers, plus ``sent_at``), where it is kept for the relay's
``retention`` and then deleted (``retention=0``: deleted at once, never archived). A row is
never in both tables, and never in neither before its retention ends. ``message_id`` is
unique within ``outbox`` only (an id reused after its message was sent is accepted).

``ordering_key`` is the message key, or the message id for a message without key: rows
sharing it are published in ``id`` order.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

__all__ = ["DEAD", "PENDING", "SENT", "inbox", "metadata", "outbox", "outbox_sent"]

#: ``outbox.state`` values. ``SENT`` rows are no longer kept in ``outbox``: a confirmed row is
#: moved to ``outbox_sent`` (only a relay older than migration ``0003`` wrote ``SENT``; the
#: clean-up still deletes such rows after the retention).
PENDING = 0
SENT = 1
DEAD = 2

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_Id = BigInteger().with_variant(Integer(), "sqlite")

outbox = Table(
    "outbox",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("destination", String(64), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("ordering_key", LargeBinary, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),  # JSON object of str -> str
    Column("state", SmallInteger, nullable=False, default=PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    # The relay's claim walks the pending rows in id order (framework.data.claims).
    Index(
        "ix_outbox_pending_id",
        "id",
        postgresql_where=text("state = 0"),
        sqlite_where=text("state = 0"),
    ),
    # Dead letters by state; the clean-up of SENT rows left by a relay older than 0003.
    Index("ix_outbox_state_sent_at", "state", "sent_at"),
    # Never reuse the id of a deleted row: ids are the per-key publication order.
    sqlite_autoincrement=True,
)

# Written once per confirmed message on the relay's hot path: a new row and two index
# entries (primary key, sent_at), instead of a new version of the wide outbox row with an
# entry in each of its indexes. No unique message_id here (a third index): it is unique
# while the row is in outbox, and the inbox de-duplicates what consumers apply.
outbox_sent = Table(
    "outbox_sent",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=False),  # the outbox row's id
    Column("message_id", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("key", LargeBinary, nullable=True),
    Column("ordering_key", LargeBinary, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),  # JSON object of str -> str
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    # Retention: the clean-up deletes by age.
    Index("ix_outbox_sent_sent_at", "sent_at"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(255), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, index=True),
    PrimaryKeyConstraint("consumer", "message_id", name="pk_inbox"),
)
