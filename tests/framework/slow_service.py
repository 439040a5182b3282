"""A service with slow HTTP and gRPC handlers, run as a subprocess by test_signals.py.

It prints ``READY <http endpoint> <grpc target>`` once the App has started.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from framework import App
from framework.middleware import recovery
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router

from app_template.api.order.v1 import order_pb2, order_pb2_grpc

DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0


class SlowOrders(order_pb2_grpc.OrderServiceServicer):
    async def GetOrder(
        self, request: order_pb2.GetOrderRequest, context: grpc.aio.ServicerContext
    ) -> order_pb2.Order:
        await asyncio.sleep(DELAY)
        return order_pb2.Order(id=request.id, status="SLOW")


def main() -> int:
    router = Router()

    @router.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(DELAY)
        return {"status": "done"}

    http = HttpServer("127.0.0.1", 0, middlewares=[recovery()])
    http.include_router(router)
    grpc_server = GrpcServer("127.0.0.1", 0, middlewares=[recovery()])
    grpc_server.register(order_pb2_grpc.add_OrderServiceServicer_to_server, SlowOrders())

    def ready() -> None:
        target = grpc_server.endpoint.removeprefix("grpc://")
        print(f"READY {http.endpoint} {target}", flush=True)

    app = App("slow", servers=[http, grpc_server], after_start=[ready], stop_timeout=5)
    return app.main()


if __name__ == "__main__":
    sys.exit(main())
