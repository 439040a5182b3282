"""WebSocket adapter: clients watch orders and receive their status changes live.

A client connected to ``/ws/orders`` sends ``{"type": "order.watch", "payload": {"order_id":
"..."}}``; the reply is the order as it is now, and from then on every status change of that
order arrives as ``{"type": "order.status", "payload": {...}}``. The changes come from the
broker (``order-paid``), pushed into the order's room by :func:`push_order_status`.
"""

from __future__ import annotations

from pydantic import BaseModel

from framework.timestamps import rfc3339
from framework.transport.websocket import Session, WebSocketRouter, WebSocketServer

from app_template.api.order.v1.events import OrderPaid
from app_template.api.order.v1.fields import OrderId
from app_template.biz.order import OrderUseCase
from app_template.service.order_http import OrderView

__all__ = [
    "ORDERS_PATH",
    "ORDER_STATUS",
    "OrderStatusPush",
    "OrderWsService",
    "WatchOrder",
    "order_room",
    "push_order_status",
]

ORDERS_PATH = "/ws/orders"
ORDER_STATUS = "order.status"


def order_room(order_id: str) -> str:
    return f"order:{order_id}"


class WatchOrder(BaseModel):
    order_id: OrderId


class OrderStatusPush(BaseModel):
    """Payload of the ``order.status`` message pushed to the clients watching an order."""

    order_id: OrderId
    status: str
    changed_at: str  # RFC 3339, UTC


class OrderWsService:
    """Handlers mounted on the WebSocket server; ``router`` is what the server includes."""

    def __init__(self, usecase: OrderUseCase) -> None:
        self.usecase = usecase
        self.router = WebSocketRouter()
        route = self.router.route(ORDERS_PATH)
        route.on("order.watch")(self.watch)
        route.on("order.unwatch")(self.unwatch)
        route.pushes(ORDER_STATUS, OrderStatusPush, description="an order's status changed")

    async def watch(self, request: WatchOrder, session: Session) -> OrderView:
        """Join the order's room (after checking it exists) and reply with its state."""
        order = await self.usecase.get(request.order_id)
        session.join(order_room(order.id))
        return OrderView.of(order)

    async def unwatch(self, request: WatchOrder, session: Session) -> None:
        session.leave(order_room(request.order_id))


async def push_order_status(server: WebSocketServer, event: OrderPaid) -> int:
    """Send the new status to the clients watching the order; returns how many got it."""
    payload = OrderStatusPush(
        order_id=event.order_id, status=event.status, changed_at=rfc3339(event.paid_at)
    )
    return await server.send_to_room(order_room(event.order_id), payload, type=ORDER_STATUS)
