"""Order events as messages of a unit of work (the transactional outbox)."""

from __future__ import annotations

from datetime import UTC, datetime

from framework.data import UnitOfWork

from app_template.api.order.v1.events import (
    ORDER_PAID,
    PAYMENT_SUCCESS,
    OrderPaid,
    PaymentSucceeded,
)
from app_template.biz.order import Order

__all__ = ["NOTIFICATIONS", "OrderEventMessages"]

#: The outbox destination of the notification broker (``data.notifications``).
NOTIFICATIONS = "notifications"


class OrderEventMessages:
    """:class:`app_template.biz.OrderEvents`: adds each event to the unit of work, keyed by
    the order id (the relay publishes one order's events in order).

    With ``notifications`` (a separate notification broker, e.g. RabbitMQ while the events
    run on Kafka), ``order-paid`` goes to both brokers: the events broker feeds the
    WebSocket push, the notification broker the customer notification.
    """

    def __init__(self, notifications: bool = False) -> None:
        self.notifications = notifications

    def payment_succeeded(self, uow: UnitOfWork, order: Order) -> None:
        event = PaymentSucceeded(
            order_id=order.id, amount_cents=order.amount_cents, currency=order.currency
        )
        uow.add_message(PAYMENT_SUCCESS, event, key=order.id)

    def order_paid(self, uow: UnitOfWork, order: Order) -> None:
        event = OrderPaid(
            order_id=order.id,
            customer_id=order.customer_id,
            status=order.status.value,
            paid_at=datetime.now(UTC),
        )
        uow.add_message(ORDER_PAID, event, key=order.id)
        if self.notifications:
            uow.add_message(ORDER_PAID, event, key=order.id, destination=NOTIFICATIONS)
