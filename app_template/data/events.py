"""Order events published through the framework's broker :class:`Publisher`."""

from __future__ import annotations

from datetime import UTC, datetime

from framework.broker import Publisher

from app_template.api.order.v1.events import (
    ORDER_PAID,
    PAYMENT_SUCCESS,
    OrderPaid,
    PaymentSucceeded,
)
from app_template.biz.order import Order

__all__ = ["BrokerOrderEvents"]


class BrokerOrderEvents:
    """:class:`app_template.biz.OrderEvents` on top of broker publishers.

    ``notifications`` is the publisher of a separate notification broker (e.g. RabbitMQ while
    the events run on Kafka); ``order-paid`` then goes to both brokers: the events broker
    feeds the WebSocket push, the notification broker the customer notification.
    """

    def __init__(self, publisher: Publisher, notifications: Publisher | None = None) -> None:
        self.publisher = publisher
        self.notifications = notifications

    async def payment_succeeded(self, order: Order) -> None:
        event = PaymentSucceeded(
            order_id=order.id, amount_cents=order.amount_cents, currency=order.currency
        )
        await self.publisher.publish(PAYMENT_SUCCESS, event, key=order.id)

    async def order_paid(self, order: Order) -> None:
        event = OrderPaid(
            order_id=order.id,
            customer_id=order.customer_id,
            status=order.status.value,
            paid_at=datetime.now(UTC),
        )
        await self.publisher.publish(ORDER_PAID, event, key=order.id)
        if self.notifications is not None:
            await self.notifications.publish(ORDER_PAID, event, key=order.id)
