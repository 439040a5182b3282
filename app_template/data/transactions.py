"""The order service's unit of work: its repositories bound to one outbox transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from framework.data import DEFAULT_DESTINATION, Transaction, TransactionalOutbox

from app_template.data.order_repo import SqlOrderRepo

__all__ = ["SqlOrderTransactions", "SqlOrderUnitOfWork"]


class SqlOrderUnitOfWork:
    """:class:`app_template.biz.OrderUnitOfWork` over one :class:`Transaction`."""

    def __init__(self, tx: Transaction) -> None:
        self.orders = SqlOrderRepo(session=tx.session)
        self._tx = tx

    def add_message(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        destination: str = DEFAULT_DESTINATION,
    ) -> str:
        return self._tx.add_message(
            topic, payload, key=key, headers=headers, destination=destination
        )


class SqlOrderTransactions:
    """:class:`app_template.biz.OrderTransactions` on the service's outbox."""

    def __init__(self, outbox: TransactionalOutbox) -> None:
        self.outbox = outbox

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[SqlOrderUnitOfWork]:
        async with self.outbox.begin() as tx:
            yield SqlOrderUnitOfWork(tx)
