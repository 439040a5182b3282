"""One trace across every hop: httpx -> HttpServer -> gRPC client -> GrpcServer -> publish on
the memory broker -> subscriber, with the trace id in every hop's logs."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import grpc
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from framework import App
from framework.broker import BrokerServer, MemoryBroker
from framework.broker import Router as BrokerRouter
from framework.log import TraceContextFilter
from framework.middleware import recovery
from framework.tracing import TracedPublisher, tracing
from framework.tracing.grpc_client import client_interceptors
from framework.tracing.http_client import traced_httpx_client
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router
from tests.grpc.protos import echo_pb2, echo_pb2_grpc
from tests.tracing.spans import SpanRecorder

_log = logging.getLogger("tests.tracing.e2e")


class OrderPlaced(BaseModel):
    text: str


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(TraceContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _Servicer(echo_pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
    def __init__(self, publisher: TracedPublisher) -> None:
        self.publisher = publisher

    async def Unary(self, request: Any, context: Any) -> Any:
        _log.info("grpc handler")
        await self.publisher.publish("orders", OrderPlaced(text=request.text), key=request.text)
        return echo_pb2.EchoReply(text=request.text.upper())


async def test_one_trace_from_http_through_grpc_and_the_broker(recorder: SpanRecorder) -> None:
    provider = recorder.provider
    logs = _Records()
    _log.addHandler(logs)
    _log.setLevel(logging.INFO)
    consumed = asyncio.Event()

    broker = MemoryBroker(name="traced")
    events = BrokerRouter()

    @events.subscriber("orders", group="shipping")
    async def on_order(event: OrderPlaced) -> None:
        _log.info("consumed %s", event.text)
        consumed.set()

    grpc_server = GrpcServer(port=0, middlewares=[tracing(provider), recovery()])
    grpc_server.register(
        echo_pb2_grpc.add_EchoServicer_to_server,
        _Servicer(TracedPublisher(broker, tracer_provider=provider)),
    )
    stubs: list[Any] = []
    http_routes = Router()

    @http_routes.get("/v1/orders/{order_id}")
    async def get_order(order_id: str) -> dict[str, str]:
        _log.info("http handler")
        reply = await stubs[0].Unary(echo_pb2.EchoRequest(text=order_id))
        return {"text": reply.text}

    http_server = HttpServer(port=0, middlewares=[tracing(provider), recovery()])
    http_server.include_router(http_routes)
    broker_server = BrokerServer(broker, [events], middlewares=[tracing(provider)])

    app = App("traced", servers=[broker_server, grpc_server, http_server], handle_signals=False)
    try:
        async with app:
            target = grpc_server.endpoint.removeprefix("grpc://")
            interceptors = client_interceptors(provider)
            async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
                stubs.append(echo_pb2_grpc.EchoStub(channel))
                async with traced_httpx_client(
                    tracer_provider=provider, base_url=http_server.endpoint
                ) as client:
                    response = await client.get("/v1/orders/a7")
                assert response.status_code == 200
                assert response.json() == {"text": "A7"}
                async with asyncio.timeout(10):
                    await consumed.wait()
                await recorder.wait_named("process orders")
    finally:
        _log.removeHandler(logs)

    client_http = recorder.one("GET")
    server_http = recorder.one("GET /v1/orders/{order_id}")
    client_grpc = [s for s in recorder.named("echo.v1.Echo/Unary") if s.kind is SpanKind.CLIENT]
    server_grpc = [s for s in recorder.named("echo.v1.Echo/Unary") if s.kind is SpanKind.SERVER]
    assert len(client_grpc) == len(server_grpc) == 1
    produce = recorder.one("publish orders")
    consume = recorder.one("process orders")
    hops = [client_http, server_http, client_grpc[0], server_grpc[0], produce, consume]

    # One trace, each hop the child of the one before.
    trace_id = client_http.context.trace_id
    assert {span.context.trace_id for span in hops} == {trace_id}
    assert client_http.parent is None
    for parent, child in itertools.pairwise(hops):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id, (parent.name, child.name)
    assert [span.kind for span in hops] == [
        SpanKind.CLIENT,
        SpanKind.SERVER,
        SpanKind.CLIENT,
        SpanKind.SERVER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    ]
    assert all(span.status.status_code is StatusCode.UNSET for span in hops)

    # Semantic-convention attributes of each hop.
    assert server_http.attributes is not None
    assert server_http.attributes["http.request.method"] == "GET"
    assert server_http.attributes["http.route"] == "/v1/orders/{order_id}"
    assert server_http.attributes["url.path"] == "/v1/orders/a7"
    assert server_http.attributes["http.response.status_code"] == 200
    assert client_http.attributes is not None
    assert client_http.attributes["http.response.status_code"] == 200
    assert client_http.attributes["url.full"] == f"{http_server.endpoint}/v1/orders/a7"
    for span in (client_grpc[0], server_grpc[0]):
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.service"] == "echo.v1.Echo"
        assert span.attributes["rpc.method"] == "Unary"
        assert span.attributes["rpc.grpc.status_code"] == 0
    for span in (produce, consume):
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == "memory"
        assert span.attributes["messaging.destination.name"] == "orders"
    assert consume.attributes is not None and produce.attributes is not None
    assert consume.attributes["messaging.message.id"] == produce.attributes["messaging.message.id"]
    assert consume.attributes["pykratos.messaging.attempt"] == 1

    # The caller can find the trace: the server span's traceparent came back.
    version, sent_trace, sent_span, flags = response.headers["traceparent"].split("-")
    assert (version, sent_trace, sent_span) == (
        "00",
        f"{trace_id:032x}",
        f"{server_http.context.span_id:016x}",
    )
    assert int(flags, 16) == int(server_http.context.trace_flags)
    assert int(flags, 16) & 1  # sampled

    # Every hop's log lines carry the trace id and the id of the span they ran in.
    by_message = {record.getMessage(): record for record in logs.records}
    for message, span in [
        ("http handler", server_http),
        ("grpc handler", server_grpc[0]),
        ("consumed a7", consume),
    ]:
        record = by_message[message]
        assert record.trace_id == f"{trace_id:032x}", message  # type: ignore[attr-defined]
        assert record.span_id == f"{span.context.span_id:016x}", message  # type: ignore[attr-defined]
