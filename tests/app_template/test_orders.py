"""The reference service end to end, over HTTP and gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framework import App, errors

from app_template.api.order.v1 import order_pb2, order_pb2_grpc

from .conftest import UNKNOWN_ID, endpoint


def grpc_target(app: App) -> str:
    return endpoint(app, "grpc").removeprefix("grpc://")


async def test_http_create_get_list_and_errors(service: App) -> None:
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        created = await client.post(
            "/v1/orders", json={"customer_id": "c1", "amount_cents": 1250, "currency": "EUR"}
        )
        assert created.status_code == 201, created.text
        order = created.json()
        assert order["status"] == "CREATED" and order["amount_cents"] == 1250

        fetched = await client.get(f"/v1/orders/{order['id']}")
        assert fetched.json() == order

        listed = await client.get("/v1/orders")
        assert [o["id"] for o in listed.json()["orders"]] == [order["id"]]

        missing = await client.get(f"/v1/orders/{UNKNOWN_ID}")
        assert missing.status_code == 404
        assert missing.json() == {
            "code": 404,
            "reason": "ORDER_NOT_FOUND",
            "message": f"order {UNKNOWN_ID} not found",
            "metadata": {"order_id": UNKNOWN_ID},
        }

        invalid = await client.post("/v1/orders", json={"customer_id": "c1", "amount_cents": -5})
        assert invalid.status_code == 400 and invalid.json()["reason"] == "VALIDATOR"

        assert (await client.get("/readyz")).status_code == 200


async def test_grpc_health_create_get_and_error_reason_matches_http(service: App) -> None:
    async with grpc.aio.insecure_channel(grpc_target(service)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        stub = order_pb2_grpc.OrderServiceStub(channel)
        created = await stub.CreateOrder(
            order_pb2.CreateOrderRequest(customer_id="c2", amount_cents=99, currency="USD")
        )
        fetched = await stub.GetOrder(order_pb2.GetOrderRequest(id=created.id))
        assert fetched == created

        streamed = [o async for o in stub.StreamOrders(order_pb2.ListOrdersRequest())]
        assert [o.id for o in streamed] == [created.id]

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.GetOrder(order_pb2.GetOrderRequest(id=UNKNOWN_ID))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    grpc_error = errors.from_exception(raised.value)

    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        http_error = (await client.get(f"/v1/orders/{UNKNOWN_ID}")).json()
    assert grpc_error.reason == http_error["reason"] == "ORDER_NOT_FOUND"
    assert grpc_error.code == http_error["code"] == 404
    assert grpc_error.metadata == http_error["metadata"]


async def test_pay_publishes_and_the_subscriber_marks_the_order_paid(service: App) -> None:
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        order = (await client.post("/v1/orders", json={"customer_id": "c3",
                                                       "amount_cents": 500})).json()
        paying = await client.post(f"/v1/orders/{order['id']}/pay")
        assert paying.status_code == 202 and paying.json()["status"] == "PAYMENT_PENDING"
        status = ""
        for _ in range(100):
            status = (await client.get(f"/v1/orders/{order['id']}")).json()["status"]
            if status == "PAID":
                break
            await asyncio.sleep(0.05)
        assert status == "PAID"
        again = await client.post(f"/v1/orders/{order['id']}/pay")
        assert again.status_code == 409 and again.json()["reason"] == "ORDER_ALREADY_PAID"
