"""SQLAlchemy implementation of :class:`app_template.biz.OrderRepo`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import UTC

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app_template.biz.order import Order, OrderStatus
from app_template.data.db import Database, OrderRow

__all__ = ["SqlOrderRepo"]


def _to_entity(row: OrderRow) -> Order:
    created = row.created_at
    if created.tzinfo is None:  # SQLite drops the zone; values are written in UTC
        created = created.replace(tzinfo=UTC)
    return Order(
        id=row.id,
        customer_id=row.customer_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        status=OrderStatus(row.status),
        created_at=created,
    )


class SqlOrderRepo:
    """Orders in the ``orders`` table.

    Give it the ``database`` (each call is its own transaction) or the ``session`` of a unit
    of work (calls join that transaction, which its owner commits).
    """

    def __init__(
        self, database: Database | None = None, *, session: AsyncSession | None = None
    ) -> None:
        if (database is None) == (session is None):
            raise ValueError("give SqlOrderRepo a database or a session")
        self.database = database
        self.session = session

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        if self.session is not None:
            yield self.session
            return
        assert self.database is not None
        async with self.database.sessions.begin() as session:
            yield session

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        if self.session is not None:
            yield self.session
            return
        assert self.database is not None
        async with self.database.sessions() as session:
            yield session

    async def save(self, order: Order) -> None:
        async with self._transaction() as session:
            session.add(
                OrderRow(
                    id=order.id,
                    customer_id=order.customer_id,
                    amount_cents=order.amount_cents,
                    currency=order.currency,
                    status=order.status.value,
                    created_at=order.created_at,
                )
            )

    async def get(self, order_id: str) -> Order | None:
        async with self._reading() as session:
            row = await session.get(OrderRow, order_id, populate_existing=True)
            return _to_entity(row) if row is not None else None

    async def list(self, limit: int) -> list[Order]:
        query = select(OrderRow).order_by(OrderRow.created_at.desc()).limit(limit)
        async with self._reading() as session:
            rows = (await session.scalars(query)).all()
        return [_to_entity(row) for row in rows]

    async def set_status(
        self,
        order_id: str,
        status: OrderStatus,
        *,
        expected: Collection[OrderStatus] | None = None,
    ) -> Order | None:
        """Set the status; with ``expected``, only if the order is in one of those statuses
        now (a compare-and-set: one ``UPDATE ... WHERE status IN (...)``, so of concurrent
        callers exactly one changes the row, whatever the isolation level). ``None`` when no
        row changed: no such order, or (with ``expected``) its status was another."""
        query = update(OrderRow).where(OrderRow.id == order_id)
        if expected is not None:
            query = query.where(OrderRow.status.in_([s.value for s in expected]))
        async with self._transaction() as session:
            result = await session.execute(query.values(status=status.value))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return None
        return await self.get(order_id)
