"""gRPC adapter of the order use case (``order.v1.OrderService``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from framework.timestamps import rfc3339

from app_template.api.order.v1 import order_pb2, order_pb2_grpc
from app_template.biz.order import Order, OrderUseCase

__all__ = ["OrderGrpcService", "to_proto"]


def to_proto(order: Order) -> order_pb2.Order:
    return order_pb2.Order(
        id=order.id,
        customer_id=order.customer_id,
        amount_cents=order.amount_cents,
        currency=order.currency,
        status=order.status.value,
        created_at=rfc3339(order.created_at),
    )


class OrderGrpcService(order_pb2_grpc.OrderServiceServicer):
    """Errors raised by the use case are mapped to gRPC status codes by the server.

    The use case validates its arguments against the same field types as the HTTP bodies, so
    a request field that could not be stored is ``INVALID_ARGUMENT`` / ``VALIDATOR`` here too.

    The CamelCase method names are the RPC names the generated servicer declares.
    """

    def __init__(self, usecase: OrderUseCase) -> None:
        self.usecase = usecase

    async def CreateOrder(
        self, request: order_pb2.CreateOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.Order:
        order = await self.usecase.create(
            request.customer_id, request.amount_cents, request.currency or "EUR"
        )
        return to_proto(order)

    async def GetOrder(
        self, request: order_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.Order:
        return to_proto(await self.usecase.get(request.id))

    async def ListOrders(
        self, request: order_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.ListOrdersResponse:
        orders = await self.usecase.list(request.page_size)
        return order_pb2.ListOrdersResponse(orders=[to_proto(o) for o in orders])

    async def PayOrder(
        self, request: order_pb2.PayOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.Order:
        return to_proto(await self.usecase.pay(request.id))

    async def StreamOrders(
        self, request: order_pb2.ListOrdersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[order_pb2.Order]:
        for order in await self.usecase.list(request.page_size):
            yield to_proto(order)
