"""Orders: the entity, the repository interface biz owns, and the use case."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

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

    async def set_status(self, order_id: str, status: OrderStatus) -> Order | None: ...


class OrderEvents(Protocol):
    """Outgoing order events; implemented in ``data`` on top of a broker publisher."""

    async def payment_succeeded(self, order: Order) -> None: ...

    async def order_paid(self, order: Order) -> None: ...


class OrderUseCase:
    """Business rules for orders, independent of any transport.

    Every method taking client input is :func:`~framework.validation.validated` against the
    field types of :mod:`app_template.api.order.v1.fields`: whichever transport calls it
    (HTTP, gRPC, WebSocket, a broker subscriber, a test), a value that could not be stored
    is refused with 400 ``VALIDATOR`` before the database sees it.
    """

    def __init__(self, repo: OrderRepo, events: OrderEvents) -> None:
        self.repo = repo
        self.events = events

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
    async def list(self, limit: PageSize = 50) -> list[Order]:
        """The newest orders, ``limit`` clamped to 1..500 (0 means the default, 50)."""
        return await self.repo.list(max(1, min(limit or 50, 500)))

    @validated
    async def pay(self, order_id: OrderId) -> Order:
        """Record that payment was requested and publish ``payment-success``."""
        order = await self.get(order_id)
        if order.status is OrderStatus.PAID:
            raise error_order_already_paid(f"order {order_id} is already paid", order_id=order_id)
        updated = await self.repo.set_status(order_id, OrderStatus.PAYMENT_PENDING)
        assert updated is not None
        await self.events.payment_succeeded(updated)
        return updated

    @validated
    async def mark_paid(self, order_id: OrderId) -> Order:
        """Consume a payment: idempotent, so an at-least-once redelivery is harmless."""
        order = await self.get(order_id)
        if order.status is OrderStatus.PAID:
            return order
        updated = await self.repo.set_status(order_id, OrderStatus.PAID)
        assert updated is not None
        await self.events.order_paid(updated)
        _log.info("order paid", extra={"order_id": order_id})
        return updated
