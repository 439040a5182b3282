"""client_interceptors(): CLIENT spans and propagation for all four gRPC call kinds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from framework.middleware import Handler
from framework.tracing import tracing
from framework.tracing.grpc_client import client_interceptors
from framework.transport import from_context
from framework.transport.grpc import GrpcServer
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2, echo_pb2_grpc
from tests.tracing.spans import SpanRecorder

Seen = list[dict[str, Any]]


def _remember_metadata(seen: Seen) -> Any:
    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = from_context()
            assert transport is not None
            seen.append(dict(transport.request_headers))
            return await handler(request)

        return run

    return middleware


@pytest.fixture
async def server(recorder: SpanRecorder) -> AsyncIterator[tuple[str, Seen]]:
    seen: Seen = []
    grpc_server = GrpcServer(
        port=0, middlewares=[_remember_metadata(seen), tracing(recorder.provider)]
    )
    grpc_server.register(echo_pb2_grpc.add_EchoServicer_to_server, EchoService())
    await grpc_server.start()
    try:
        yield grpc_server.endpoint.removeprefix("grpc://"), seen
    finally:
        await grpc_server.stop(1.0)


async def _pair(recorder: SpanRecorder, method: str) -> tuple[ReadableSpan, ReadableSpan]:
    """The CLIENT and SERVER spans of ``method``, once both ended; checks their link."""
    name = f"echo.v1.Echo/{method}"
    await recorder.wait_for(lambda spans: sum(s.name == name for s in spans) >= 2)
    spans = {span.kind: span for span in recorder.named(name)}
    client, server = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert client.attributes is not None
    assert client.attributes["rpc.method"] == method
    assert client.attributes["rpc.grpc.status_code"] == 0
    return client, server


async def _requests(*texts: str) -> AsyncIterator[Any]:
    for text in texts:
        yield echo_pb2.EchoRequest(text=text)


async def test_all_four_call_kinds_propagate_and_trace(
    server: tuple[str, Seen], recorder: SpanRecorder
) -> None:
    target, seen = server
    tracer = recorder.provider.get_tracer("test")
    interceptors = client_interceptors(recorder.provider)
    async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        with tracer.start_as_current_span("caller") as caller:
            reply = await stub.Unary(echo_pb2.EchoRequest(text="u"), metadata=(("x-user", "ada"),))
            assert reply.text == "u"
            # The span of a unary call has ended by the time the caller has the reply.
            assert recorder.named("echo.v1.Echo/Unary")[-1].kind is SpanKind.CLIENT
            streamed = [
                r.text async for r in stub.ServerStream(echo_pb2.EchoRequest(text="s", count=3))
            ]
            assert streamed == ["s", "s", "s"]
            assert (await stub.ClientStream(_requests("a", "b"))).text == "ab"
            assert [r.text async for r in stub.Bidi(_requests("x", "y"))] == ["X", "Y"]
        caller_id = caller.get_span_context().span_id

    for method in ("Unary", "ServerStream", "ClientStream", "Bidi"):
        client, _ = await _pair(recorder, method)
        assert client.parent is not None and client.parent.span_id == caller_id
    # The caller's own metadata still arrives next to the trace context.
    assert seen[0]["x-user"] == "ada"
    assert all("traceparent" in metadata for metadata in seen)


async def test_read_and_write_call_apis_work_through_the_interceptor(
    server: tuple[str, Seen], recorder: SpanRecorder
) -> None:
    target, _ = server
    interceptors = client_interceptors(recorder.provider)
    async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        call = stub.ServerStream(echo_pb2.EchoRequest(text="r", count=2))
        assert (await call.read()).index == 0
        assert (await call.read()).index == 1
        assert await call.read() is grpc.aio.EOF
        # The interceptor returned before the caller wrote: writing cannot deadlock.
        writer = stub.ClientStream()
        await writer.write(echo_pb2.EchoRequest(text="w1"))
        await writer.write(echo_pb2.EchoRequest(text="w2"))
        await writer.done_writing()
        assert (await writer).text == "w1w2"
    await _pair(recorder, "ServerStream")
    await _pair(recorder, "ClientStream")


async def test_without_a_tracer_provider_calls_pass_through_untouched(
    server: tuple[str, Seen], recorder: SpanRecorder
) -> None:
    target, seen = server
    # No provider given and no global one installed: tracing is off.
    async with grpc.aio.insecure_channel(target, interceptors=client_interceptors()) as channel:
        reply = await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest(text="off"))
    assert reply.text == "off"
    assert "traceparent" not in seen[0]
    # The server still traces (it has a provider): a new trace, no remote parent.
    (span,) = recorder.named("echo.v1.Echo/Unary")
    assert span.kind is SpanKind.SERVER and span.parent is None


async def test_a_stream_that_fails_midway_ends_its_span_with_the_reason(
    server: tuple[str, Seen], recorder: SpanRecorder
) -> None:
    target, _ = server
    async with grpc.aio.insecure_channel(
        target, interceptors=client_interceptors(recorder.provider)
    ) as channel:
        stream = echo_pb2_grpc.EchoStub(channel).ServerStream(
            echo_pb2.EchoRequest(text="f", count=3, fail="error", fail_at=1)
        )
        received = []
        with pytest.raises(grpc.aio.AioRpcError):
            async for reply in stream:
                received.append(reply.index)
        assert received == [0]
    name = "echo.v1.Echo/ServerStream"
    await recorder.wait_for(lambda spans: sum(s.name == name for s in spans) >= 2)
    (client,) = [s for s in recorder.named(name) if s.kind is SpanKind.CLIENT]
    assert client.attributes is not None
    assert client.attributes["error.type"] == "ECHO_NOT_FOUND"
    assert client.attributes["rpc.grpc.status_code"] == 5
    assert client.status.description is not None
    assert client.status.description.startswith("404 ECHO_NOT_FOUND")
