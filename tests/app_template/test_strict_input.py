"""Input the reference service used to coerce or clamp silently, now refused with 400
``VALIDATOR`` / ``INVALID_ARGUMENT`` on SQLite and PostgreSQL.

- integers in JSON are strict: ``true``, ``"5"`` and ``5.0`` are not an ``amount_cents``
  (pydantic's lax mode turned them into 1 and 5); protobuf integers still pass;
- a negative page size is refused on every transport (it was clamped to 1); 0 still means
  the default, as in protobuf, where an unset ``page_size`` reads 0;
- an order id is 32 lowercase hex digits, the only ids the service issues: anything else is
  refused instead of looked up (a path segment with invalid UTF-8, which percent-decoding
  turned into U+FFFD, answered 404 with U+FFFD in the message).
"""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from framework import App, errors
from framework.middleware import VALIDATOR

from app_template.api.order.v1 import order_pb2, order_pb2_grpc
from app_template.container import Container

from .conftest import UNKNOWN_ID, endpoint

# A service per case over real sockets: out of a scaffolded project's default (offline, fast)
# run, like test_unstorable_input.py; `-m slow` and the framework's own suite run it.
pytestmark = pytest.mark.slow


def _grpc_target(app: App) -> str:
    return endpoint(app, "grpc").removeprefix("grpc://")


def _assert_validator(reply: httpx.Response) -> None:
    assert reply.status_code == 400, reply.text
    assert reply.json()["reason"] == VALIDATOR, reply.text


@pytest.mark.parametrize("amount", [True, False, "5", 5.0, "1e3"], ids=repr)
async def test_http_amount_cents_is_a_json_integer(service: App, amount: Any) -> None:
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        reply = await client.post("/v1/orders", json={"customer_id": "c1", "amount_cents": amount})
        _assert_validator(reply)
        assert "amount_cents" in reply.text
        listed = await client.get("/v1/orders")
        assert listed.json()["orders"] == []  # nothing stored
        ok = await client.post("/v1/orders", json={"customer_id": "c1", "amount_cents": 5})
        assert ok.status_code == 201 and ok.json()["amount_cents"] == 5


async def test_use_case_refuses_a_bool_amount(wired: tuple[App, Container]) -> None:
    # What a broker subscriber or a test calling the use case reaches: the same strictness.
    usecase = wired[1].order_usecase()
    with pytest.raises(errors.Error) as raised:
        await usecase.create("c1", True)
    assert raised.value.reason == VALIDATOR


async def test_grpc_integers_still_pass_strict_fields(service: App) -> None:
    async with grpc.aio.insecure_channel(_grpc_target(service)) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        order = await stub.CreateOrder(
            order_pb2.CreateOrderRequest(customer_id="g1", amount_cents=42)
        )
        assert order.amount_cents == 42
        listed = await stub.ListOrders(order_pb2.ListOrdersRequest(page_size=3))
        assert [o.id for o in listed.orders] == [order.id]


@pytest.mark.parametrize("limit", ["-1", "-500", "-2147483648"])
async def test_http_negative_limit_is_refused(service: App, limit: str) -> None:
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        _assert_validator(await client.get("/v1/orders", params={"limit": limit}))


async def test_http_zero_limit_means_the_default(service: App) -> None:
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        created = await client.post("/v1/orders", json={"customer_id": "c1", "amount_cents": 5})
        assert created.status_code == 201
        listed = await client.get("/v1/orders", params={"limit": "0"})
        assert listed.status_code == 200
        assert [o["id"] for o in listed.json()["orders"]] == [created.json()["id"]]


@pytest.mark.parametrize("page_size", [-1, -5])
async def test_grpc_negative_page_size_is_invalid_argument(service: App, page_size: int) -> None:
    request = order_pb2.ListOrdersRequest(page_size=page_size)
    async with grpc.aio.insecure_channel(_grpc_target(service)) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.ListOrders(request)
        with pytest.raises(grpc.aio.AioRpcError) as stream:
            async for _ in stub.StreamOrders(request):
                pass
    for raised in (unary, stream):
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        assert errors.from_exception(raised.value).reason == VALIDATOR
        # The field the client set, not a parameter name of the use case.
        assert (raised.value.details() or "").startswith("page_size: "), raised.value.details()


@pytest.mark.parametrize(
    "segment", ["%FF", "%ED%A0%80", "nope", "0" * 31, "A" * 32, "0" * 33], ids=repr
)
@pytest.mark.parametrize("route", ["GET /v1/orders/{id}", "POST /v1/orders/{id}/pay"])
async def test_http_malformed_order_id_is_refused(service: App, route: str, segment: str) -> None:
    method, path = route.split(" ")
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as client:
        reply = await client.request(method, path.replace("{id}", segment))
        _assert_validator(reply)
        assert "\ufffd" not in reply.text
        # A well-formed id that was never issued is still a lookup.
        unknown = await client.request(method, path.replace("{id}", UNKNOWN_ID))
        assert unknown.status_code == 404 and unknown.json()["reason"] == "ORDER_NOT_FOUND"


@pytest.mark.parametrize("rpc", ["GetOrder", "PayOrder"])
async def test_grpc_malformed_order_id_is_invalid_argument(service: App, rpc: str) -> None:
    request = getattr(order_pb2, f"{rpc}Request")(id="nope")
    async with grpc.aio.insecure_channel(_grpc_target(service)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(order_pb2_grpc.OrderServiceStub(channel), rpc)(request)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert errors.from_exception(raised.value).reason == VALIDATOR
