"""The database resource: an async SQLAlchemy engine, created at App start, disposed at stop."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, String, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from framework.data import metadata as outbox_metadata

from app_template.api.order.v1.fields import (
    CURRENCY_LENGTH,
    CUSTOMER_ID_MAX_LENGTH,
    ORDER_ID_MAX_LENGTH,
)

__all__ = ["Base", "Database", "OrderRow"]

_log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class OrderRow(Base):
    """The ``orders`` table; sizes come from the field types every transport validates with
    (:mod:`app_template.api.order.v1.fields`), so what passes validation fits here."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(ORDER_ID_MAX_LENGTH), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(CUSTOMER_ID_MAX_LENGTH), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # AmountCents is an Int64
    currency: Mapped[str] = mapped_column(String(CURRENCY_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # WAL: readers and the one writer do not block each other (the outbox relay reads while
    # requests write); writers wait up to 30 s for each other instead of failing "database is
    # locked" after sqlite3's 5 s under a burst of concurrent writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """Owns the engine; an App resource (``start`` creates the schema, ``close`` disposes).

    Args:
        url: SQLAlchemy async URL: ``sqlite+aiosqlite:///orders.db`` (embedded default) or
            ``postgresql+asyncpg://user@127.0.0.1:5432/db``.
        schema: PostgreSQL schema to use (created if missing); ``None`` for the default.
        echo: log SQL statements.
    """

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = url
        self.schema = schema
        connect_args: dict[str, object] = {}
        if schema and url.startswith("postgresql+asyncpg"):
            connect_args["server_settings"] = {"search_path": schema}
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, connect_args=connect_args)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    async def start(self) -> None:
        """Check connectivity and create the tables that do not exist yet (the service's, and
        the framework's ``outbox`` and ``inbox``)."""
        async with self.engine.begin() as conn:
            if self.schema:
                await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.run_sync(Base.metadata.create_all)
            await conn.run_sync(outbox_metadata.create_all)
        _log.info("database ready", extra={"database": self.engine.url.render_as_string()})

    async def close(self) -> None:
        await self.engine.dispose()
