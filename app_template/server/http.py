"""Build the HTTP server from config and the service layer."""

from __future__ import annotations

from framework.metrics import mount_metrics
from framework.middleware import Middleware
from framework.middleware.ratelimit import MaxInFlight
from framework.transport.http import HttpServer

from app_template.conf.conf import HttpConf, MetricsConf
from app_template.server.ops import Operations
from app_template.service.order_http import OrderHttpService

__all__ = ["new_http_server"]


def new_http_server(
    conf: HttpConf,
    middlewares: list[Middleware],
    orders: OrderHttpService,
    ops: Operations,
    metrics_conf: MetricsConf,
) -> HttpServer:
    server = HttpServer(
        conf.host,
        conf.port,
        middlewares=middlewares,
        name="http",
        max_body_size=conf.max_body_size,
        admission=MaxInFlight(conf.max_in_flight) if conf.max_in_flight else None,
        header_timeout=conf.header_timeout,
        body_timeout=conf.body_timeout,
        keep_alive_timeout=conf.keep_alive_timeout,
        max_header_size=conf.max_header_size,
        tls=conf.tls,
    )
    server.include_router(orders.router)
    if ops.metrics is not None:
        mount_metrics(server, ops.metrics, metrics_conf.path)
    return server
