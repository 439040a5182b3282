"""After traffic on HTTP, gRPC, WebSocket and the memory broker, ``GET /metrics`` shows each
instrument with the semantic-convention names, labels and counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import BaseModel
from websockets.asyncio.client import connect

from framework import App
from framework.broker import BrokerServer, MemoryBroker, Publisher, RetryPolicy
from framework.broker import Router as BrokerRouter
from framework.errors import NotFound
from framework.metrics import Metrics, metrics, mount_metrics, setup_metrics
from framework.middleware import recovery
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router
from framework.transport.websocket import WebSocketServer
from tests.grpc.protos import echo_pb2, echo_pb2_grpc


class Event(BaseModel):
    n: int


@pytest.fixture
def setup() -> Iterator[Metrics]:
    # Not global: OpenTelemetry lets a process set its global provider only once.
    metrics_ = setup_metrics("metrics-test", set_global=False)
    yield metrics_
    metrics_.shutdown()


class _Echo(echo_pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
    async def Unary(self, request: Any, context: Any) -> Any:
        if request.text == "missing":
            raise NotFound("NOPE", "no such text")
        return echo_pb2.EchoReply(text=request.text)


def _samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert found, f"no {name} sample with {labels}"
    return sum(s.value for s in found)


async def test_metrics_after_traffic_on_every_transport(setup: Metrics) -> None:
    provider = setup.provider
    broker = MemoryBroker(name="metered")
    events = BrokerRouter()
    flaky_calls: list[int] = []
    done, flaky_done, tagged_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @events.subscriber("m-ok", group="g1")
    async def ok(event: Event) -> None:
        if event.n == 3:
            done.set()

    @events.subscriber("m-flaky", group="g1", retry=RetryPolicy(max_attempts=2, backoff=0))
    async def flaky(event: Event) -> None:
        flaky_calls.append(event.n)
        if len(flaky_calls) == 2:
            flaky_done.set()  # its outcome is recorded before the processor next yields
        raise RuntimeError("always fails")

    @events.subscriber("m-tagged", group="g1", tags={"paid"})
    async def tagged(event: Event) -> None:
        tagged_done.set()

    routes = Router()

    @routes.get("/v1/items/{item_id}")
    async def get_item(item_id: str) -> dict[str, str]:
        if item_id == "missing":
            raise NotFound("ITEM_NOT_FOUND", "no such item")
        return {"id": item_id}

    http = HttpServer(port=0, middlewares=[metrics(provider), recovery()])
    http.include_router(routes)
    mount_metrics(http, setup)
    rpc = GrpcServer(port=0, middlewares=[metrics(provider), recovery()])
    rpc.register(echo_pb2_grpc.add_EchoServicer_to_server, _Echo())
    ws = WebSocketServer(port=0, middlewares=[metrics(provider), recovery()])

    @ws.on("ping")
    async def ping(payload: Any) -> str:
        return "pong"

    servers = [BrokerServer(broker, [events], middlewares=[metrics(provider)]), rpc, http, ws]
    app = App("metered", servers=servers, handle_signals=False)
    async with app:
        publisher = Publisher(broker)
        async with httpx.AsyncClient(base_url=http.endpoint) as client:
            for path in ("/v1/items/1", "/v1/items/2", "/v1/items/missing"):
                await client.get(path)
            target = rpc.endpoint.removeprefix("grpc://")
            async with grpc.aio.insecure_channel(target) as channel:
                stub = echo_pb2_grpc.EchoStub(channel)
                await stub.Unary(echo_pb2.EchoRequest(text="a"))
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Unary(echo_pb2.EchoRequest(text="missing"))
            async with connect(ws.endpoint) as socket:
                for _ in range(3):
                    await socket.send(orjson.dumps({"type": "ping"}).decode())
                    await socket.recv()
                during = _samples((await client.get("/metrics")).text)
            for n in (1, 2, 3):
                await publisher.publish("m-ok", Event(n=n))
            await publisher.publish("m-flaky", Event(n=9))
            # One key: the filtered-out message is taken before the one that ends the wait.
            await publisher.publish("m-tagged", Event(n=1), key=b"k", tag="created")
            await publisher.publish("m-tagged", Event(n=2), key=b"k", tag="paid")
            async with asyncio.timeout(10):
                await done.wait()
                await flaky_done.wait()
                await tagged_done.wait()
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)

    # HTTP: a histogram per route and status; /metrics itself is not measured.
    http_count = "http_server_request_duration_seconds_count"
    route = {"http_request_method": "GET", "http_route": "/v1/items/{item_id}"}
    assert _value(samples, http_count, **route, http_response_status_code="200") == 2
    assert _value(samples, http_count, **route, http_response_status_code="404") == 1
    assert not [s for s in samples if s.labels.get("http_route") == "/metrics"]
    buckets = [s for s in samples if s.name == "http_server_request_duration_seconds_bucket"]
    assert {s.labels["le"] for s in buckets} >= {"0.005", "10.0", "+Inf"}
    assert _value(samples, "http_server_active_requests", **route) == 0

    # gRPC: rpc.server.call.duration by method and status name.
    rpc_count = "rpc_server_call_duration_seconds_count"
    method = {"rpc_system_name": "grpc", "rpc_method": "echo.v1.Echo/Unary"}
    assert _value(samples, rpc_count, **method, rpc_response_status_code="OK") == 1
    assert _value(samples, rpc_count, **method, rpc_response_status_code="NOT_FOUND",
                  error_type="NOT_FOUND") == 1

    # WebSocket: per message type; one session while the client was connected, none after.
    ws_count = "pykratos_websocket_message_duration_seconds_count"
    assert _value(samples, ws_count, websocket_message_type="ping") == 3
    assert _value(during, "pykratos_websocket_sessions") == 1
    assert _value(samples, "pykratos_websocket_sessions") == 0

    # Broker: outcomes, processing duration, publishes.
    consumed = "messaging_client_consumed_messages_total"
    base = {"messaging_system": "memory", "messaging_consumer_group_name": "g1"}
    assert _value(samples, consumed, **base, messaging_destination_name="m-ok",
                  pykratos_messaging_outcome="ok") == 3
    flaky_labels = {**base, "messaging_destination_name": "m-flaky", "error_type": "RuntimeError"}
    assert _value(samples, consumed, **flaky_labels, pykratos_messaging_outcome="retried") == 1
    assert _value(samples, consumed, **flaky_labels,
                  pykratos_messaging_outcome="dead_lettered") == 1
    assert _value(samples, "messaging_process_duration_seconds_count", **base,
                  messaging_destination_name="m-ok") == 3
    # A message the subscriber's tags left out is counted as filtered, with no duration.
    tagged_labels = {**base, "messaging_destination_name": "m-tagged"}
    assert _value(samples, consumed, **tagged_labels, pykratos_messaging_outcome="ok") == 1
    assert _value(samples, consumed, **tagged_labels,
                  pykratos_messaging_outcome="filtered") == 1
    assert _value(samples, "messaging_process_duration_seconds_count", **tagged_labels) == 1
    sent = "messaging_client_sent_messages_total"
    assert _value(samples, sent, messaging_system="memory", messaging_destination_name="m-ok",
                  messaging_operation_name="publish") == 3
    assert _value(samples, "messaging_client_operation_duration_seconds_count",
                  messaging_destination_name="m-flaky") == 1
