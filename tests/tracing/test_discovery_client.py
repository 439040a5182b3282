"""The discovery clients reuse the tracing client pieces: one trace across the hop."""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from framework.client import grpc_channel, http_client
from framework.registry import ServiceInstance, StaticDiscovery
from framework.tracing import tracing
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer, Router
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2, echo_pb2_grpc
from tests.tracing.spans import SpanRecorder


async def test_grpc_and_http_client_spans_continue_on_the_server(
    global_recorder: SpanRecorder,
) -> None:
    grpc_server = GrpcServer("127.0.0.1", 0, middlewares=[tracing()])
    grpc_server.register(echo_pb2_grpc.add_EchoServicer_to_server, EchoService())
    router = Router()

    @router.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    http_server = HttpServer("127.0.0.1", 0, middlewares=[tracing()])
    http_server.include_router(router)
    await grpc_server.start()
    await http_server.start()
    registry = StaticDiscovery(
        {
            "echo": [
                ServiceInstance("e", "echo", endpoints=(grpc_server.endpoint, http_server.endpoint))
            ]
        }
    )
    try:
        # tracing=None: on, because a global provider is installed.
        async with await grpc_channel("discovery:///echo", discovery=registry, tracing=None) as ch:
            await echo_pb2_grpc.EchoStub(ch).Unary(echo_pb2.EchoRequest(text="x"))
        async with await http_client("discovery:///echo", discovery=registry, tracing=None) as c:
            assert (await c.get("/ping")).json() == {"pong": "yes"}
        spans = await global_recorder.wait_for(lambda s: len(s) >= 4)
        by_kind: dict[tuple[str, SpanKind], object] = {}
        for span in spans:
            protocol = "grpc" if "Echo" in span.name else "http"
            by_kind[(protocol, span.kind)] = span
        for protocol in ("grpc", "http"):
            client = by_kind[(protocol, SpanKind.CLIENT)]
            server = by_kind[(protocol, SpanKind.SERVER)]
            assert server.context.trace_id == client.context.trace_id  # type: ignore[attr-defined]
    finally:
        await grpc_server.stop(1)
        await http_server.stop(1)
