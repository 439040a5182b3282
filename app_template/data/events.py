"""Order events published through the framework's broker :class:`Publisher`."""

from __future__ import annotations

from datetime import datetime

from app_template.biz.order import Order
from framework.broker import Publisher

from app_template.api.order.v1.events import (
    ORDER_PAID,
    PAYMENT_SUCCESS,
    OrderPaid,
    PaymentSucceeded,
)

__all__ = ["BrokerOrderEvents"]


class BrokerOrderEvents:
    """:class:`app_template.biz.OrderEvents` on top of a broker publisher."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def payment_succeeded(self, order: Order) -> None:
        event = PaymentSucceeded(order_id=order.id, amount_cents=order.amount_cents,
                                 currency=order.currency)
        await self.publisher.publish(PAYMENT_SUCCESS, event, key=order.id)

    async def order_paid(self, order: Order) -> None:
        event = OrderPaid(order_id=order.id, customer_id=order.customer_id,
                          status=order.status.value, paid_at=datetime.now(order.created_at.tzinfo))
        await self.publisher.publish(ORDER_PAID, event, key=order.id)
