"""Orders: the entity, the repository interface biz owns, and the use case."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from framework.data import UnitOfWork
from framework.validation import validated

from app_template.api.order.v1.fields import AmountCents, Currency, CustomerId, OrderId, PageSize
from app_template.api.order.v1.order_errors import (
    error_order_already_paid,
    error_order_not_found,
)

__all__ = [
    "Order",
    "OrderEvents",
    "OrderRepo",
    "OrderStatus",
    "OrderTransactions",
    "OrderUnitOfWork",
    "OrderUseCase",
]

_log = logging.getLogger(__name__)


class OrderStatus(StrEnum):
    """Where an order is in its life: created, payment requested, paid."""

    CREATED = "CREATED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAID = "PAID"


@dataclass(slots=True)
class Order:
    """The order entity; ``id`` and ``created_at`` are set when it is made."""

    customer_id: str
    amount_cents: int
    currency: str = "EUR"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: OrderStatus = OrderStatus.CREATED
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class OrderRepo(Protocol):
    """Persistence of orders; implemented in ``data``."""

    async def save(self, order: Order) -> None: ...

    async def get(self, order_id: str) -> Order | None: ...

    async def list(self, limit: int) -> list[Order]: ...

    async def set_status(
        self,
        order_id: str,
        status: OrderStatus,
        *,
        expected: Collection[OrderStatus] | None = None,
    ) -> Order | None:
        """Set the status atomically; with ``expected``, only when the order is in one of
        those statuses now. ``None`` when nothing changed (no such order, other status)."""
        ...


class OrderUnitOfWork(UnitOfWork, Protocol):
    """One transaction: the orders it changes and the messages it adds
    (``add_message``) commit together, or neither does."""

    orders: OrderRepo


class OrderTransactions(Protocol):
    """Opens an :class:`OrderUnitOfWork`; implemented in ``data``."""

    def begin(self) -> AbstractAsyncContextManager[OrderUnitOfWork]: ...


class OrderEvents(Protocol):
    """Outgoing order events, added to a unit of work; implemented in ``data``."""

    def payment_succeeded(self, uow: UnitOfWork, order: Order) -> None: ...

    def order_paid(self, uow: UnitOfWork, order: Order) -> None: ...


class OrderUseCase:
    """Business rules for orders, independent of any transport.

    Every method taking client input is :func:`~framework.validation.validated` against the
    field types of :mod:`app_template.api.order.v1.fields`: whichever transport calls it
    (HTTP, gRPC, WebSocket, a broker subscriber, a test), a value that could not be stored
    is refused with 400 ``VALIDATOR`` before the database sees it.
    """

    def __init__(
        self, repo: OrderRepo, events: OrderEvents, transactions: OrderTransactions
    ) -> None:
        self.repo = repo
        self.events = events
        self.transactions = transactions

    @validated
    async def create(
        self, customer_id: CustomerId, amount_cents: AmountCents, currency: Currency = "EUR"
    ) -> Order:
        """Store a new order (400 ``VALIDATOR`` naming the field when one is invalid)."""
        order = Order(customer_id=customer_id, amount_cents=amount_cents, currency=currency.upper())
        await self.repo.save(order)
        _log.info("order created", extra={"order_id": order.id})
        return order

    @validated
    async def get(self, order_id: OrderId) -> Order:
        """The order ``order_id``, or ``ORDER_NOT_FOUND``."""
        order = await self.repo.get(order_id)
        if order is None:
            raise error_order_not_found(f"order {order_id} not found", order_id=order_id)
        return order

    @validated
    async def list(self, page_size: PageSize = 50) -> list[Order]:
        """The newest orders: at most ``page_size``, capped at 500; 0 means the default, 50
        (a negative ``page_size`` is refused with 400 ``VALIDATOR``). Named as the protobuf
        field, so that a refusal names the field a gRPC client set."""
        return await self.repo.list(max(1, min(page_size or 50, 500)))

    @validated
    async def pay(self, order_id: OrderId) -> Order:
        """Record that payment was requested, and ``payment-success``, in one transaction.

        The event is published after the commit (the outbox relay), so the answer never waits
        for the broker, and a committed payment is never without its event.

        Only a CREATED order can be paid: the status changes with a compare-and-set, so of
        concurrent pays exactly one succeeds (and adds the event); the others, like any pay of
        an order whose payment is pending or done, get 409 ``ORDER_ALREADY_PAID``.
        """
        async with self.transactions.begin() as tx:
            updated = await tx.orders.set_status(
                order_id, OrderStatus.PAYMENT_PENDING, expected=(OrderStatus.CREATED,)
            )
            if updated is None:
                order = await tx.orders.get(order_id)
                if order is None:
                    raise error_order_not_found(f"order {order_id} not found", order_id=order_id)
                raise error_order_already_paid(
                    f"order {order_id} is already paid"
                    if order.status is OrderStatus.PAID
                    else f"payment of order {order_id} is already requested",
                    order_id=order_id,
                    status=order.status.value,
                )
            self.events.payment_succeeded(tx, updated)
        return updated

    @validated
    async def mark_paid(self, order_id: OrderId) -> Order:
        """Consume a payment: the order becomes PAID and ``order-paid`` is added, in one
        transaction.

        A redelivered message is skipped by the subscriber's inbox (it records the message in
        this same transaction), so its effects happen once. An order another payment already
        made PAID (even one racing this one) stays as it is, without a second ``order-paid``.
        """
        async with self.transactions.begin() as tx:
            # Compare-and-set: of concurrent deliveries for one order, one changes the row.
            updated = await tx.orders.set_status(
                order_id,
                OrderStatus.PAID,
                expected=(OrderStatus.CREATED, OrderStatus.PAYMENT_PENDING),
            )
            if updated is None:
                order = await tx.orders.get(order_id)
                if order is None:
                    raise error_order_not_found(f"order {order_id} not found", order_id=order_id)
                _log.info("order already paid", extra={"order_id": order_id})
                return order
            self.events.order_paid(tx, updated)
        _log.info("order paid", extra={"order_id": order_id})
        return updated
