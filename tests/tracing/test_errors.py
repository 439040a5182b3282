"""Failures on spans: the framework error's code and reason, and the status the semantic
conventions give them (a server's 4xx is the caller's fault; 5xx and consumer failures are
errors)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from framework import App
from framework.broker import BrokerServer, MemoryBroker, RetryPolicy
from framework.broker import Router as BrokerRouter
from framework.errors import BadRequest, NotFound
from framework.middleware import recovery
from framework.tracing import TracedPublisher, tracing
from framework.tracing.grpc_client import client_interceptors
from framework.tracing.http_client import traced_httpx_client
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2, echo_pb2_grpc
from tests.tracing.spans import SpanRecorder


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _exception_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == "exception"]


# -- HTTP server ----------------------------------------------------------------------------


def _items_router() -> Router:
    router = Router()

    @router.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise NotFound("ITEM_NOT_FOUND", "no such item", item_id=str(item_id))
        if item_id == 500:
            raise RuntimeError("database exploded")
        return {"id": item_id}

    return router


@pytest.fixture
async def http_app(recorder: SpanRecorder) -> AsyncIterator[httpx.AsyncClient]:
    # recovery() inside tracing(): the span sees the 500 INTERNAL_ERROR the client gets.
    server = HttpServer(port=0, middlewares=[tracing(recorder.provider), recovery()])
    server.include_router(_items_router())
    async with (
        App("t", servers=[server], handle_signals=False),
        httpx.AsyncClient(base_url=server.endpoint) as client,
    ):
        yield client


async def test_http_client_error_is_recorded_but_not_a_server_failure(
    http_app: httpx.AsyncClient, recorder: SpanRecorder
) -> None:
    response = await http_app.get("/items/404")
    assert response.status_code == 404
    span = recorder.one("GET /items/{item_id}")
    assert span.status.status_code is StatusCode.UNSET
    attributes = _attrs(span)
    assert attributes["error.type"] == "ITEM_NOT_FOUND"
    assert attributes["pykratos.error.code"] == 404
    assert attributes["pykratos.error.reason"] == "ITEM_NOT_FOUND"
    assert attributes["http.response.status_code"] == 404
    (event,) = _exception_events(span)
    assert event["exception.type"].endswith("Error")
    assert "ITEM_NOT_FOUND" in event["exception.message"]
    # The error response still names the trace.
    assert response.headers["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"


async def test_http_server_failure_sets_error_status_with_code_and_reason(
    http_app: httpx.AsyncClient, recorder: SpanRecorder
) -> None:
    response = await http_app.get("/items/500")
    assert response.status_code == 500
    span = recorder.one("GET /items/{item_id}")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "500 INTERNAL_ERROR: internal error"
    assert _attrs(span)["error.type"] == "INTERNAL_ERROR"
    assert _attrs(span)["http.response.status_code"] == 500


async def test_without_recovery_inside_the_span_sees_the_raw_exception(
    recorder: SpanRecorder,
) -> None:
    server = HttpServer(port=0, middlewares=[recovery(), tracing(recorder.provider)])
    server.include_router(_items_router())
    async with (
        App("t", servers=[server], handle_signals=False),
        httpx.AsyncClient(base_url=server.endpoint) as client,
    ):
        assert (await client.get("/items/500")).status_code == 500
    span = recorder.one("GET /items/{item_id}")
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "RuntimeError"
    assert _exception_events(span)[0]["exception.message"] == "database exploded"


# -- gRPC, both sides -----------------------------------------------------------------------


@pytest.fixture
async def echo_stub(recorder: SpanRecorder) -> AsyncIterator[Any]:
    server = GrpcServer(port=0, middlewares=[tracing(recorder.provider), recovery()])
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, EchoService())
    await server.start()
    target = server.endpoint.removeprefix("grpc://")
    try:
        interceptors = client_interceptors(recorder.provider)
        async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
            yield echo_pb2_grpc.EchoStub(channel)
    finally:
        await server.stop(1.0)


def _by_kind(recorder: SpanRecorder, name: str) -> dict[SpanKind, ReadableSpan]:
    spans = {span.kind: span for span in recorder.named(name)}
    assert set(spans) == {SpanKind.CLIENT, SpanKind.SERVER}, recorder.names()
    return spans


async def test_grpc_error_reason_reaches_both_spans(echo_stub: Any, recorder: SpanRecorder) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await echo_stub.Unary(echo_pb2.EchoRequest(text="x", fail="error"))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    # The reply headers (traceparent) ride in the trailers of the failed call as well.
    trailers = dict(raised.value.trailing_metadata() or ())
    spans = _by_kind(recorder, "echo.v1.Echo/Unary")
    server, client = spans[SpanKind.SERVER], spans[SpanKind.CLIENT]
    assert trailers["traceparent"].split("-")[2] == f"{server.context.span_id:016x}"

    for span in (server, client):
        attributes = _attrs(span)
        assert attributes["error.type"] == "ECHO_NOT_FOUND"
        assert attributes["pykratos.error.code"] == 404
        assert attributes["rpc.grpc.status_code"] == 5
    # NOT_FOUND is the caller's problem for the server, a failed call for the client.
    assert server.status.status_code is StatusCode.UNSET
    assert client.status.status_code is StatusCode.ERROR
    assert client.status.description is not None
    assert client.status.description.startswith("404 ECHO_NOT_FOUND")


async def test_grpc_crash_is_an_error_on_both_sides(echo_stub: Any, recorder: SpanRecorder) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await echo_stub.Unary(echo_pb2.EchoRequest(text="x", fail="crash"))
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    spans = _by_kind(recorder, "echo.v1.Echo/Unary")
    for span in spans.values():
        assert span.status.status_code is StatusCode.ERROR
        assert _attrs(span)["error.type"] == "INTERNAL_ERROR"
        assert _attrs(span)["rpc.grpc.status_code"] == 13


# -- brokers --------------------------------------------------------------------------------


async def test_consumer_spans_per_attempt_and_dead_letter(recorder: SpanRecorder) -> None:
    broker = MemoryBroker(name="errors")
    router = BrokerRouter()
    attempts: list[int] = []
    done = asyncio.Event()

    @router.subscriber("flaky", group="g", retry=RetryPolicy(max_attempts=3, backoff=0.001))
    async def flaky(event: dict[str, int]) -> None:
        attempts.append(event["n"])
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        done.set()

    @router.subscriber("invalid", group="g")
    async def invalid(event: dict[str, int]) -> None:
        raise BadRequest("BAD_EVENT", "n must be positive")

    server = BrokerServer(broker, [router], middlewares=[tracing(recorder.provider)])
    async with App("t", servers=[server], handle_signals=False):
        publisher = TracedPublisher(broker, tracer_provider=recorder.provider)
        await publisher.publish("flaky", {"n": 1})
        await publisher.publish("invalid", {"n": -1})
        async with asyncio.timeout(10):
            await done.wait()
        await recorder.wait_named("process flaky", 2)
        await recorder.wait_named("process invalid")

    failed, succeeded = sorted(
        recorder.named("process flaky"), key=lambda s: _attrs(s)["pykratos.messaging.attempt"]
    )
    assert failed.status.status_code is StatusCode.ERROR
    assert _attrs(failed)["error.type"] == "RuntimeError"
    assert _attrs(failed)["pykratos.messaging.attempt"] == 1
    assert succeeded.status.status_code is StatusCode.UNSET
    assert _attrs(succeeded)["pykratos.messaging.attempt"] == 2
    # Both attempts continue the publisher's trace.
    publish = recorder.one("publish flaky")
    for span in (failed, succeeded):
        assert span.parent is not None and span.parent.span_id == publish.context.span_id

    # A consumer has no caller to blame: even a 400 is a failed operation.
    dead = recorder.one("process invalid")
    assert dead.status.status_code is StatusCode.ERROR
    assert dead.status.description == "400 BAD_EVENT: n must be positive"
    assert _attrs(dead)["pykratos.error.reason"] == "BAD_EVENT"


async def test_failed_publish_is_an_error_span(recorder: SpanRecorder) -> None:
    publisher = TracedPublisher(MemoryBroker(), tracer_provider=recorder.provider)
    with pytest.raises(RuntimeError, match="not connected"):
        await publisher.publish("orders", {"id": 1})
    span = recorder.one("publish orders")
    assert span.kind is SpanKind.PRODUCER
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "RuntimeError"


# -- HTTP client ----------------------------------------------------------------------------


async def test_http_client_marks_error_responses_and_transport_errors(
    recorder: SpanRecorder,
) -> None:
    async def reply_404(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    async with traced_httpx_client(
        tracer_provider=recorder.provider, transport=httpx.MockTransport(reply_404)
    ) as client:
        assert (await client.get("http://svc.test/missing")).status_code == 404
    span = recorder.one("GET")
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "404"
    assert _attrs(span)["server.address"] == "svc.test"
    assert _attrs(span)["server.port"] == 80

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with traced_httpx_client(tracer_provider=recorder.provider) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://user:secret@127.0.0.1:{port}/x")
    span = recorder.one("POST")
    assert span.status.status_code is StatusCode.ERROR
    assert _attrs(span)["error.type"] == "ConnectError"
    assert "secret" not in _attrs(span)["url.full"]
