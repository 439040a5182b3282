"""The ``outbox`` and ``inbox`` tables (SQLAlchemy Core, one :data:`metadata`).

Create them like the service's own tables (``await conn.run_sync(metadata.create_all)``
next to the service's ``Base.metadata.create_all``), or apply the SQL scripts shipped in
``framework/data/migrations/`` with the service's migration tool.

``outbox`` rows move ``PENDING`` -> ``SENT`` (published and confirmed) or ``DEAD`` (the
broker refused them permanently; ``error`` says why). ``ordering_key`` is the message key, or
the message id for a message without key: rows sharing it are published in ``id`` order.
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

__all__ = ["DEAD", "PENDING", "SENT", "inbox", "metadata", "outbox"]

#: ``outbox.state`` values.
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
    # Retention: sent rows by age.
    Index("ix_outbox_state_sent_at", "state", "sent_at"),
    # Never reuse the id of a deleted row: ids are the per-key publication order.
    sqlite_autoincrement=True,
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(255), nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, index=True),
    PrimaryKeyConstraint("consumer", "message_id", name="pk_inbox"),
)
