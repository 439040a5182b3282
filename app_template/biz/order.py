"""Orders: the entity, the repository interface biz owns, and the use case."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

from app_template.api.order.v1.order_errors import (
    error_order_already_paid,
    error_order_invalid,
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
    """Business rules for orders, independent of any transport."""

    def __init__(self, repo: OrderRepo, events: OrderEvents) -> None:
        self.repo = repo
        self.events = events

    async def create(self, customer_id: str, amount_cents: int, currency: str = "EUR") -> Order:
        """Validate and store a new order (``ORDER_INVALID`` when a field is wrong)."""
        if not customer_id:
            raise error_order_invalid("customer_id is required")
        if amount_cents <= 0:
            raise error_order_invalid(
                "amount_cents must be positive", amount_cents=str(amount_cents)
            )
        if len(currency) != 3 or not currency.isalpha():
            raise error_order_invalid("currency must be a 3-letter ISO code", currency=currency)
        order = Order(customer_id=customer_id, amount_cents=amount_cents, currency=currency.upper())
        await self.repo.save(order)
        _log.info("order created", extra={"order_id": order.id})
        return order

    async def get(self, order_id: str) -> Order:
        """The order ``order_id``, or ``ORDER_NOT_FOUND``."""
        order = await self.repo.get(order_id)
        if order is None:
            raise error_order_not_found(f"order {order_id} not found", order_id=order_id)
        return order

    async def list(self, limit: int = 50) -> list[Order]:
        """The newest orders, ``limit`` clamped to 1..500 (0 means the default, 50)."""
        return await self.repo.list(max(1, min(limit or 50, 500)))

    async def pay(self, order_id: str) -> Order:
        """Record that payment was requested and publish ``payment-success``."""
        order = await self.get(order_id)
        if order.status is OrderStatus.PAID:
            raise error_order_already_paid(f"order {order_id} is already paid", order_id=order_id)
        updated = await self.repo.set_status(order_id, OrderStatus.PAYMENT_PENDING)
        assert updated is not None
        await self.events.payment_succeeded(updated)
        return updated

    async def mark_paid(self, order_id: str) -> Order:
        """Consume a payment: idempotent, so an at-least-once redelivery is harmless."""
        order = await self.get(order_id)
        if order.status is OrderStatus.PAID:
            return order
        updated = await self.repo.set_status(order_id, OrderStatus.PAID)
        assert updated is not None
        await self.events.order_paid(updated)
        _log.info("order paid", extra={"order_id": order_id})
        return updated
