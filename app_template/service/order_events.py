"""Broker adapter: the subscribers of the order service.

The handlers take their use case through dependency-injector's ``Provide`` marker; the
container wires this module at start (:func:`app_template.wire.wire_app`), and the broker
server refuses to start a handler whose markers were not wired.
"""

from __future__ import annotations

import logging

from dependency_injector.wiring import Provide, inject

from framework.broker import Router
from framework.data import idempotent
from framework.transport.websocket import WebSocketServer

from app_template.api.order.v1.events import (
    ORDER_PAID,
    PAYMENT_SUCCESS,
    OrderPaid,
    PaymentSucceeded,
)
from app_template.biz.order import OrderUseCase
from app_template.service.order_ws import push_order_status

__all__ = ["notifications", "router"]

_log = logging.getLogger(__name__)

router = Router()
#: Customer notifications: mounted on ``data.notifications`` when that broker is configured.
notifications = Router()

# What the service publishes (app_template.data.events), declared for the AsyncAPI document.
router.publisher(PAYMENT_SUCCESS, PaymentSucceeded, description="a payment was accepted")
router.publisher(ORDER_PAID, OrderPaid, description="an order is paid")


# The inbox records each payment-success message in mark_paid's own transaction: a
# redelivery (a crash before the ack, a relay publishing twice) changes nothing twice.
@router.subscriber(
    PAYMENT_SUCCESS,
    group="order-svc",
    concurrency=4,
    middlewares=[idempotent("order-svc.payment-success")],
)
@inject
async def on_payment_succeeded(
    event: PaymentSucceeded, orders: OrderUseCase = Provide["order_usecase"]
) -> None:
    """Mark the order paid and add ``order-paid``, once per message (the inbox)."""
    await orders.mark_paid(event.order_id)


@notifications.subscriber(ORDER_PAID, group="order-notifications")
async def notify_order_paid(event: OrderPaid) -> None:
    """Send the "order paid" notification to the customer (here: a log line)."""
    _log.info(
        "notification: order %s of customer %s is paid",
        event.order_id,
        event.customer_id,
        extra={"order_id": event.order_id, "customer_id": event.customer_id},
    )


# broadcast: every instance gets every event, because the watching clients are spread over
# the instances' WebSocket servers.
@router.subscriber(ORDER_PAID, broadcast=True)
@inject
async def push_order_paid(event: OrderPaid, ws: WebSocketServer = Provide["ws_server"]) -> None:
    """Push the new status to the WebSocket clients watching this order."""
    await push_order_status(ws, event)
