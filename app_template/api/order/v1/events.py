"""Broker event contracts of the order service (the JSON counterpart of order.proto)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

__all__ = ["ORDER_PAID", "PAYMENT_SUCCESS", "OrderPaid", "PaymentSucceeded"]

#: Topic of :class:`PaymentSucceeded`.
PAYMENT_SUCCESS = "payment-success"
#: Topic of :class:`OrderPaid`.
ORDER_PAID = "order-paid"


class PaymentSucceeded(BaseModel):
    """A payment for an order went through."""

    order_id: str
    amount_cents: int
    currency: str


class OrderPaid(BaseModel):
    """An order was marked paid."""

    order_id: str
    customer_id: str
    status: str
    paid_at: datetime
