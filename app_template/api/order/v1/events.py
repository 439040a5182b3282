"""Broker event contracts of the order service (the JSON counterpart of order.proto).

Fields use the types of :mod:`app_template.api.order.v1.fields`, so an event carrying a value
that could not be stored (a NUL in ``order_id``, an amount beyond ``BIGINT``) fails to decode
and goes straight to the dead letters with the reason, instead of failing in the database on
every retry.
"""

from __future__ import annotations

from pydantic import BaseModel

from framework.timestamps import Timestamp

from app_template.api.order.v1.fields import AmountCents, Currency, CustomerId, OrderId

__all__ = ["ORDER_PAID", "PAYMENT_SUCCESS", "OrderPaid", "PaymentSucceeded"]

#: Topic of :class:`PaymentSucceeded`.
PAYMENT_SUCCESS = "payment-success"
#: Topic of :class:`OrderPaid`.
ORDER_PAID = "order-paid"


class PaymentSucceeded(BaseModel):
    """A payment for an order went through."""

    order_id: OrderId
    amount_cents: AmountCents
    currency: Currency


class OrderPaid(BaseModel):
    """An order was marked paid."""

    order_id: OrderId
    customer_id: CustomerId
    status: str
    paid_at: Timestamp
