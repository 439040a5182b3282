"""The reference service through the in-process test kit: offline, no external service.

HTTP runs through httpx's ASGI transport (no socket), gRPC and WebSocket on loopback port 0,
and the brokers on the test broker, whatever ``data.broker`` names: the same flows as
``test_brokers.py`` (which runs them on the real brokers) in a fraction of the time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from framework.broker import DLQ_REASON
from framework.data import UnitOfWork
from framework.errors import Error
from framework.testing import HandlerFailed, TestApp, override

from app_template.api.order.v1 import order_pb2, order_pb2_grpc
from app_template.api.order.v1.events import ORDER_PAID, PAYMENT_SUCCESS, PaymentSucceeded
from app_template.biz.order import Order
from app_template.container import Container
from app_template.service.order_events import on_payment_succeeded, push_order_paid
from app_template.wire import wire_app

from .conftest import UNKNOWN_ID, make_bootstrap


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[TestApp]:
    async with TestApp(wire_app(make_bootstrap(_sqlite(tmp_path)))) as started:
        yield started


async def _create(kit: TestApp, customer: str = "c1", amount: int = 1200) -> str:
    created = await kit.http.post(
        "/v1/orders", json={"customer_id": customer, "amount_cents": amount}
    )
    assert created.status_code == 201, created.text
    order_id: str = created.json()["id"]
    return order_id


async def test_http_runs_the_middleware_pipeline_in_process(kit: TestApp) -> None:
    order_id = await _create(kit)
    fetched = await kit.http.get(f"/v1/orders/{order_id}")
    assert fetched.json()["status"] == "CREATED"
    missing = await kit.http.get(f"/v1/orders/{UNKNOWN_ID}")
    assert missing.status_code == 404
    assert missing.json()["reason"] == "ORDER_NOT_FOUND"  # the framework's error rendering
    assert (await kit.http.get("/readyz")).status_code == 200


async def test_grpc_reaches_the_real_servicer(kit: TestApp) -> None:
    stub = order_pb2_grpc.OrderServiceStub(kit.grpc)
    order = await stub.CreateOrder(order_pb2.CreateOrderRequest(customer_id="g1", amount_cents=7))
    fetched = await stub.GetOrder(order_pb2.GetOrderRequest(id=order.id))
    assert (fetched.customer_id, fetched.amount_cents) == ("g1", 7)
    http_view = (await kit.http.get(f"/v1/orders/{order.id}")).json()
    assert http_view["customer_id"] == "g1"  # one service behind both transports
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # the server's error mapping ran
        await stub.GetOrder(order_pb2.GetOrderRequest(id=UNKNOWN_ID))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


async def test_websocket_request_reply_and_error(kit: TestApp) -> None:
    order_id = await _create(kit)
    async with kit.websocket("/ws/orders") as ws:
        watched = await ws.request("order.watch", {"order_id": order_id})
        assert watched["id"] == order_id
        with pytest.raises(Error) as raised:
            await ws.request("order.watch", {"order_id": UNKNOWN_ID})
        assert raised.value.reason == "ORDER_NOT_FOUND"


async def test_pay_event_paid_push(kit: TestApp) -> None:
    order_id = await _create(kit, "c9", 4200)
    async with kit.websocket("/ws/orders") as ws:
        await ws.request("order.watch", {"order_id": order_id})
        assert (await kit.http.post(f"/v1/orders/{order_id}/pay")).status_code == 202
        (handled,) = await kit.broker.handled(on_payment_succeeded)
        assert handled.payload.order_id == order_id
        await kit.broker.handled(push_order_paid)
        pushed = await ws.receive("order.status")
    assert pushed.payload["status"] == "PAID"
    (event,) = kit.broker.published_to(PAYMENT_SUCCESS)
    assert event.key == order_id.encode()
    assert event.decode(PaymentSucceeded).amount_cents == 4200
    assert [p.key for p in kit.broker.published_to(ORDER_PAID)] == [order_id.encode()]
    assert (await kit.http.get(f"/v1/orders/{order_id}")).json()["status"] == "PAID"


async def test_configured_kafka_is_replaced_without_touching_config(tmp_path: Path) -> None:
    bootstrap = make_bootstrap(_sqlite(tmp_path))
    bootstrap.data.broker.kind = "kafka"  # nothing listens there: the test broker stands in
    bootstrap.data.broker.options = {"bootstrap_servers": "127.0.0.1:1"}
    async with TestApp(wire_app(bootstrap)) as kit:
        order_id = await _create(kit)
        await kit.http.post(f"/v1/orders/{order_id}/pay")
        await kit.broker.handled(on_payment_succeeded)
        await kit.broker.handled(push_order_paid)
        assert (await kit.http.get(f"/v1/orders/{order_id}")).json()["status"] == "PAID"
    assert bootstrap.data.broker.kind == "kafka"


async def test_a_failing_handler_fails_the_test(kit: TestApp) -> None:
    event = PaymentSucceeded(order_id=UNKNOWN_ID, amount_cents=1, currency="EUR")
    await kit.publish(PAYMENT_SUCCESS, event, key=UNKNOWN_ID)
    with pytest.raises(HandlerFailed) as raised:
        await kit.broker.handled(on_payment_succeeded)
    assert "ORDER_NOT_FOUND" in raised.value.reason
    assert isinstance(raised.value.__cause__, Error)
    assert kit.broker.published_to(f"{PAYMENT_SUCCESS}.dlq") == []


async def test_dead_lettering_can_be_turned_back_on(tmp_path: Path) -> None:
    app = wire_app(make_bootstrap(_sqlite(tmp_path)))
    async with TestApp(app, dead_letter=True) as kit:
        event = PaymentSucceeded(order_id=UNKNOWN_ID, amount_cents=1, currency="EUR")
        await kit.publish(PAYMENT_SUCCESS, event, key=UNKNOWN_ID)
        await kit.broker.handled(on_payment_succeeded)
        (dead,) = kit.broker.published_to(f"{PAYMENT_SUCCESS}.dlq")
    assert "ORDER_NOT_FOUND" in dead.headers[DLQ_REASON]


class _RecordingEvents:
    def __init__(self) -> None:
        self.paid: list[str] = []

    def payment_succeeded(self, uow: UnitOfWork, order: Order) -> None:
        self.paid.append(order.id)  # and no message added to the unit of work

    def order_paid(self, uow: UnitOfWork, order: Order) -> None:
        raise AssertionError("no payment event was published")


async def test_a_provider_is_overridden_for_one_test(tmp_path: Path) -> None:
    container = Container()
    fake = _RecordingEvents()
    with override(container.order_events, fake):
        async with TestApp(wire_app(make_bootstrap(_sqlite(tmp_path)), container)) as kit:
            order_id = await _create(kit)
            await kit.http.post(f"/v1/orders/{order_id}/pay")
            assert kit.broker.published == []  # the fake, not the broker, got the event
    assert fake.paid == [order_id]
    assert not container.order_events.overridden
