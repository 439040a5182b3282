"""Build the gRPC server from config and the service layer."""

from __future__ import annotations

from framework.middleware import Middleware
from framework.middleware.ratelimit import MaxInFlight
from framework.transport.grpc import GrpcServer

from app_template.api.order.v1 import order_pb2_grpc
from app_template.conf.conf import GrpcConf
from app_template.service.order_grpc import OrderGrpcService

__all__ = ["new_grpc_server"]


def new_grpc_server(
    conf: GrpcConf, middlewares: list[Middleware], orders: OrderGrpcService
) -> GrpcServer:
    server = GrpcServer(
        conf.host,
        conf.port,
        middlewares=middlewares,
        reflection=conf.reflection,
        name="grpc",
        max_receive_message_length=conf.max_receive_message_length,
        admission=MaxInFlight(conf.max_in_flight) if conf.max_in_flight else None,
        tls=conf.tls,
    )
    server.register(order_pb2_grpc.add_OrderServiceServicer_to_server, orders)
    return server
