"""Build the WebSocket server from config and the service layer."""

from __future__ import annotations

from framework.middleware import Middleware
from framework.transport.websocket import WebSocketServer

from app_template.conf.conf import WebSocketConf
from app_template.server.ops import Operations
from app_template.service.order_ws import OrderWsService

__all__ = ["new_websocket_server"]


def new_websocket_server(
    conf: WebSocketConf, middlewares: list[Middleware], orders: OrderWsService, ops: Operations
) -> WebSocketServer:
    server = WebSocketServer(
        conf.host,
        conf.port,
        middlewares=middlewares,
        name="websocket",
        max_message_size=conf.max_message_size,
        send_queue_size=conf.send_queue_size,
        slow_client_policy=conf.slow_client_policy,
        allowed_origins=conf.allowed_origins,
        authenticate=ops.authenticate,
        max_connections=conf.max_connections,
        tls=conf.tls,
    )
    server.include_router(orders.router)
    return server
