"""Build the HTTP server from config and the service layer."""

from __future__ import annotations

from framework.middleware import Middleware
from framework.transport.http import HttpServer

from app_template.conf.conf import HttpConf
from app_template.service.order_http import OrderHttpService

__all__ = ["new_http_server"]


def new_http_server(
    conf: HttpConf, middlewares: list[Middleware], orders: OrderHttpService
) -> HttpServer:
    server = HttpServer(
        conf.host,
        conf.port,
        middlewares=middlewares,
        name="http",
        max_body_size=conf.max_body_size,
    )
    server.include_router(orders.router)
    return server
