"""Issue 8 item 26, on the reference service: one timestamp format on every transport, and
the OpenAPI document named after the service."""

from __future__ import annotations

import json
from datetime import datetime

import grpc
import httpx
import websockets

from framework import App

from app_template.api.order.v1 import order_pb2, order_pb2_grpc

from .conftest import endpoint


def _is_rfc3339_z(text: str) -> bool:
    return text.endswith("Z") and datetime.fromisoformat(text).utcoffset() is not None


async def test_created_at_is_rfc3339_with_z_over_http_grpc_and_websocket(service: App) -> None:
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        created = (await client.post("/v1/orders", json={"customer_id": "c", "amount_cents": 1}))
    order = created.json()
    target = endpoint(service, "grpc").removeprefix("grpc://")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        over_grpc = await stub.GetOrder(order_pb2.GetOrderRequest(id=order["id"]))
    async with websockets.connect(endpoint(service, "ws") + "/ws/orders") as ws:
        await ws.send(json.dumps({"type": "order.watch", "payload": {"order_id": order["id"]}}))
        over_ws = json.loads(await ws.recv())["payload"]
    stamps = [order["created_at"], over_grpc.created_at, over_ws["created_at"]]
    assert all(_is_rfc3339_z(stamp) for stamp in stamps), stamps
    assert len(set(stamps)) == 1, stamps  # the same instant, written the same way


async def test_openapi_is_titled_after_the_service(service: App) -> None:
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        info = (await client.get("/openapi.json")).json()["info"]
    assert info["title"] == service.name and info["title"] != "http"
    assert info["version"] == service.version
