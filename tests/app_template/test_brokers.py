"""The reference service on the real brokers: switching is configuration only.

The same routers (payment-success -> mark paid -> order-paid -> notification + WebSocket push)
run on RabbitMQ, on a Kafka-protocol broker (Tansu), on NATS JetStream, on Redis Streams and on
MQTT (a private Mosquitto: the service's fixed topics and shared-subscription groups must not
meet another test run's) with nothing changed but ``data.broker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import websockets

from framework import App
from framework.testing import TestApp
from framework.transport.kafka.tansu import TansuProcess, TansuUnavailable
from framework.transport.mqtt.mosquitto import MosquittoProcess, MosquittoUnavailable
from tests.services import (
    amqp_url,
    free_port,
    nats_url,
    rabbitmqctl,
    redis_url,
    require_url,
    unavailable,
)

from app_template.api.order.v1.events import PAYMENT_SUCCESS
from app_template.conf.conf import BrokerConf
from app_template.service.order_events import on_payment_succeeded
from app_template.wire import wire_app

from .conftest import endpoint, make_bootstrap

# Every test here needs a broker server (or Tansu / Mosquitto processes): a scaffolded
# project's default `pytest` run deselects them, `pytest -m services` runs them.
pytestmark = pytest.mark.services

RABBITMQ = pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)
KAFKA = pytest.param("kafka", marks=pytest.mark.kafka)


@pytest.fixture(scope="module")
def tansu() -> Iterator[TansuProcess]:
    try:
        process = TansuProcess(port=free_port()).start()
    except TansuUnavailable as exc:
        unavailable(f"Tansu (Kafka-protocol broker): {exc}")
        raise
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def mosquitto() -> Iterator[MosquittoProcess]:
    process = MosquittoProcess(port=free_port())
    try:
        process.start()
    except MosquittoUnavailable as exc:
        unavailable(f"mosquitto: {exc}")
        raise
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def rabbit_vhost() -> Iterator[str]:
    """A private RabbitMQ vhost: the service's durable queues vanish with it."""
    require_url(amqp_url(), "RabbitMQ")
    vhost = f"pykratos-svc-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield amqp_url(vhost)
    finally:
        rabbitmqctl("delete_vhost", vhost)


async def delete_stream(name: str) -> None:
    """Delete the NATS stream ``name`` with its consumers (if it exists)."""
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(nats_url())
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(name)
    finally:
        await client.close()


@pytest.fixture
def nats_stream() -> str:
    """A stream name of the service's own on NATS (``service_on_broker`` deletes it)."""
    require_url(nats_url(), "NATS")
    return f"pykratos_svc_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the shared Redis: its streams are deleted afterwards."""
    from redis import Redis

    require_url(redis_url(), "Redis")
    prefix = f"pykratos-svc-{uuid.uuid4().hex[:8]}:"
    yield prefix
    with Redis.from_url(redis_url()) as admin:
        keys = list(admin.scan_iter(match=f"{prefix}*"))
        if keys:
            admin.unlink(*keys)


@pytest.fixture(
    params=[
        RABBITMQ,
        KAFKA,
        pytest.param("nats", marks=pytest.mark.nats),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("mqtt", marks=pytest.mark.mqtt),
    ]
)
async def service_on_broker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[App]:
    kind = request.param
    options: dict[str, Any]
    if kind == "rabbitmq":
        options = {"url": request.getfixturevalue("rabbit_vhost")}
    elif kind == "nats":
        stream = request.getfixturevalue("nats_stream")
        options = {"servers": nats_url(), "stream": stream, "storage": "memory"}
    elif kind == "mqtt":
        options = {"url": request.getfixturevalue("mosquitto").url}
    elif kind == "redis":
        options = {"url": redis_url(), "key_prefix": request.getfixturevalue("redis_prefix")}
    else:
        tansu: TansuProcess = request.getfixturevalue("tansu")
        options = tansu.client_options
    bootstrap = make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
    bootstrap.data.broker.kind = kind
    bootstrap.data.broker.options = options
    app = wire_app(bootstrap)
    app.handle_signals = False
    try:
        async with app:
            assert app.servers[0].broker.kind == kind  # type: ignore[attr-defined]
            yield app
    finally:
        if kind == "nats":  # the stream and its consumers
            await delete_stream(options["stream"])


async def test_pay_flow_and_websocket_push_on_a_real_broker(service_on_broker: App) -> None:
    ws_url = endpoint(service_on_broker, "ws") + "/ws/orders"
    async with httpx.AsyncClient(base_url=endpoint(service_on_broker, "http")) as http, \
            websockets.connect(ws_url) as watcher:
        order = (await http.post("/v1/orders", json={"customer_id": "c9",
                                                     "amount_cents": 4200})).json()
        await watcher.send(json.dumps({"type": "order.watch",
                                       "payload": {"order_id": order["id"]}}))
        await asyncio.wait_for(watcher.recv(), 10)  # the watch reply
        assert (await http.post(f"/v1/orders/{order['id']}/pay")).status_code == 202
        pushed = json.loads(await asyncio.wait_for(watcher.recv(), 20))
        assert pushed["type"] == "order.status"
        assert pushed["payload"]["status"] == "PAID"
        stored = (await http.get(f"/v1/orders/{order['id']}")).json()
        assert stored["status"] == "PAID"


@pytest.mark.kafka
@pytest.mark.rabbitmq
async def test_events_on_kafka_and_notifications_on_rabbitmq(
    tansu: TansuProcess, rabbit_vhost: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
    bootstrap.data.broker.kind = "kafka"
    bootstrap.data.broker.options = tansu.client_options
    bootstrap.data.notifications = BrokerConf(kind="rabbitmq", options={"url": rabbit_vhost})
    app = wire_app(bootstrap)
    app.handle_signals = False
    caplog.set_level("INFO", logger="app_template.service.order_events")
    async with app, httpx.AsyncClient(base_url=endpoint(app, "http")) as http:
        assert [type(s.broker).__name__ for s in app.servers[:2]] == [  # type: ignore[attr-defined]
            "KafkaBroker", "RabbitBroker"]
        order = (await http.post("/v1/orders", json={"customer_id": "c7",
                                                     "amount_cents": 10})).json()
        await http.post(f"/v1/orders/{order['id']}/pay")
        expected = f"notification: order {order['id']} of customer c7 is paid"
        for _ in range(200):
            if expected in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert expected in caplog.text


@pytest.mark.parametrize("kind", [RABBITMQ, KAFKA])
async def test_the_kit_runs_the_same_flow_on_the_real_broker(
    kind: Literal["rabbitmq", "kafka"], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``real_brokers=True`` (the ``real_brokers`` marker of the pytest plugin): the kit's
    recordings and waits, on the broker the config names."""
    options: dict[str, Any]
    if kind == "rabbitmq":
        options = {"url": request.getfixturevalue("rabbit_vhost")}
    else:
        options = request.getfixturevalue("tansu").client_options
    bootstrap = make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}")
    bootstrap.data.broker.kind = kind
    bootstrap.data.broker.options = options
    async with TestApp(wire_app(bootstrap), real_brokers=True) as kit:
        assert kit.broker.servers[0].broker.kind == kind
        order = (await kit.http.post("/v1/orders", json={"customer_id": "k1",
                                                         "amount_cents": 5})).json()
        async with kit.websocket("/ws/orders") as ws:
            await ws.request("order.watch", {"order_id": order["id"]})
            await kit.http.post(f"/v1/orders/{order['id']}/pay")
            (handled,) = await kit.broker.handled(on_payment_succeeded, timeout=30)
            assert handled.message.topic == PAYMENT_SUCCESS
            pushed = await ws.receive("order.status", timeout=30)
        assert pushed.payload["status"] == "PAID"
