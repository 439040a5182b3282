"""Issue 8 items 8 and 11 on the reference service: the samples from the issue, and the size
limits read from its config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from framework import App, errors
from framework.config import load

from app_template.api.order.v1 import order_pb2, order_pb2_grpc
from app_template.conf.conf import Bootstrap
from app_template.wire import wire_app

from .conftest import endpoint, make_bootstrap

LIMIT = 2048


@pytest.fixture
async def small_limits(tmp_path: Path) -> AsyncIterator[App]:
    conf = make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
    conf.server.http.max_body_size = LIMIT
    conf.server.grpc.max_receive_message_length = LIMIT
    app = wire_app(conf)
    app.handle_signals = False
    async with app:
        yield app


def test_item11_reference_config_declares_the_limits() -> None:
    # The shipped file, without environment overrides: its values, not the model defaults.
    conf = load(Path(__file__).parents[2] / "configs", environ={}).scan(Bootstrap)
    assert conf.server.http.max_body_size == 1 << 20
    assert conf.server.grpc.max_receive_message_length == 1 << 20


async def test_item8_undecodable_get_order_is_invalid_argument(small_limits: App) -> None:
    target = endpoint(small_limits, "grpc").removeprefix("grpc://")
    async with grpc.aio.insecure_channel(target) as channel:
        get_order = channel.unary_unary("/order.v1.OrderService/GetOrder")  # identity serializers
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_order(b"\x0a\x7fabc")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert errors.from_exception(caught.value).reason == "MALFORMED_REQUEST"


async def test_item11_reference_service_limits_come_from_config(small_limits: App) -> None:
    oversized = {"customer_id": "c" * LIMIT, "amount_cents": 5}
    async with httpx.AsyncClient(base_url=endpoint(small_limits, "http")) as client:
        refused = await client.post("/v1/orders", json=oversized)
    assert refused.status_code == 413
    assert refused.json()["reason"] == errors.PAYLOAD_TOO_LARGE

    target = endpoint(small_limits, "grpc").removeprefix("grpc://")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateOrder(
                order_pb2.CreateOrderRequest(customer_id="c" * LIMIT, amount_cents=5)
            )
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert errors.from_exception(caught.value).reason == errors.PAYLOAD_TOO_LARGE
