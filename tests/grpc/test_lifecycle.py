"""Registration rules, binding, and the graceful stop of GrpcServer inside an App."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from framework.app import App, AppStartError
from framework.transport import ReadinessAware, Server
from framework.transport.grpc import GrpcServer
from tests.grpc.conftest import StartServer, target
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2, echo_pb2_grpc


def test_implements_the_server_protocols() -> None:
    server = GrpcServer(port=9123)
    assert isinstance(server, Server)
    assert isinstance(server, ReadinessAware)
    assert server.endpoint == "grpc://127.0.0.1:9123"
    assert GrpcServer(host="::1", port=5).endpoint == "grpc://[::1]:5"


def test_register_learns_service_names_and_rejects_mistakes(echo: EchoService) -> None:
    server = GrpcServer()
    assert server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo) == ("echo.v1.Echo",)
    assert server.services == ("echo.v1.Echo",)
    with pytest.raises(ValueError, match="already registered"):
        server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo)
    with pytest.raises(ValueError, match="registered nothing"):
        server.register(lambda servicer, srv: None, echo)


def test_register_accepts_generic_handlers_only(echo: EchoService) -> None:
    """Older generated code only calls add_generic_rpc_handlers."""

    def add_old_style(servicer: Any, server: Any) -> None:
        handler = grpc.method_handlers_generic_handler(
            "echo.v1.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(
                    servicer.Unary,
                    request_deserializer=echo_pb2.EchoRequest.FromString,
                    response_serializer=echo_pb2.EchoReply.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))

    server = GrpcServer()
    assert server.register(add_old_style, echo) == ("echo.v1.Echo",)


async def test_hand_written_generic_handler_runs_the_chain() -> None:
    seen: list[str] = []

    def recording(handler: Any) -> Any:
        async def run(request: Any) -> Any:
            from framework.transport import from_context

            transport = from_context()
            assert transport is not None
            seen.append(transport.operation)
            return await handler(request)

        return run

    async def ping(request: bytes, context: Any) -> bytes:
        return b"pong:" + request

    class Any_(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: Any) -> Any:
            if details.method.startswith("/raw.Svc/"):
                return grpc.unary_unary_rpc_method_handler(ping)
            return None

    server = GrpcServer(middlewares=[recording])
    assert server.register(lambda _s, srv: srv.add_generic_rpc_handlers((Any_(),)), None) == ()
    await server.start()
    try:
        async with grpc.aio.insecure_channel(target(server)) as channel:
            for method in ("/raw.Svc/A", "/raw.Svc/A", "/raw.Svc/B"):
                assert await channel.unary_unary(method)(b"x") == b"pong:x"
    finally:
        await server.stop(1.0)
    assert seen == ["/raw.Svc/A", "/raw.Svc/A", "/raw.Svc/B"]


async def test_register_after_start_is_refused(
    start_server: StartServer, echo: EchoService
) -> None:
    server, _ = await start_server()
    with pytest.raises(RuntimeError, match="before start"):
        server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo)
    with pytest.raises(RuntimeError, match="already started"):
        await server.start()


async def test_busy_port_fails_start_clearly_and_stop_is_safe(echo: EchoService) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = GrpcServer(port=port, name="orders-grpc")
        server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo)
        app = App("echo", servers=[server], handle_signals=False)
        with pytest.raises(AppStartError, match=f"orders-grpc.*127.0.0.1:{port}"):
            await app.start()
    await server.stop(1.0)
    await GrpcServer().stop(1.0)  # never started


async def test_a_second_server_on_the_same_port_fails(start_server: StartServer) -> None:
    first, _ = await start_server()
    port = int(first.endpoint.rsplit(":", 1)[1])
    second = GrpcServer(port=port)
    with pytest.raises(OSError, match=f"cannot bind gRPC server to 127.0.0.1:{port}"):
        await second.start()
    await second.stop(1.0)


async def test_in_flight_call_completes_while_the_app_stops(echo: EchoService) -> None:
    server = GrpcServer()
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo)
    app = App("echo", servers=[server], handle_signals=False, stop_timeout=10)
    await app.start()
    async with grpc.aio.insecure_channel(target(server)) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        slow = asyncio.ensure_future(stub.Slow(echo_pb2.EchoRequest(text="slow"), timeout=10))
        await asyncio.wait_for(echo.slow_entered.wait(), 5)
        started = time.monotonic()
        stopping = asyncio.create_task(app.shutdown())

        # The watch ends once the server has begun to stop (health shut down, intake closed).
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await watch.read() is grpc.aio.EOF
        # New calls are refused while the slow call is still running...
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Unary(echo_pb2.EchoRequest(text="late"), timeout=5)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert not slow.done() and not stopping.done()

        # ...and the in-flight call still completes normally.
        echo.slow_release.set()
        assert (await slow).text == "slow"
        await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - started < 5


async def test_stop_cancels_calls_still_running_after_the_timeout(
    start_server: StartServer, echo: EchoService
) -> None:
    server, stub = await start_server()
    slow = asyncio.ensure_future(stub.Slow(echo_pb2.EchoRequest(text="stuck"), timeout=10))
    await asyncio.wait_for(echo.slow_entered.wait(), 5)

    started = time.monotonic()
    await server.stop(0.2)

    assert time.monotonic() - started < 3
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await slow
    assert caught.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


class _CleansUpAfterAnswering(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
    """``Unary`` aborts (the client has its answer), then cleans up until ``release`` is set."""

    def __init__(self) -> None:
        self.cleaning = asyncio.Event()
        self.release = asyncio.Event()
        self.cleaned = False

    async def Unary(self, request: Any, context: Any) -> Any:
        try:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")
        finally:
            self.cleaning.set()
            await self.release.wait()
            self.cleaned = True


async def _answered_then_cleaning(server: GrpcServer, servicer: _CleansUpAfterAnswering) -> None:
    async with grpc.aio.insecure_channel(target(server)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest(), timeout=10)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    await asyncio.wait_for(servicer.cleaning.wait(), 5)


async def test_item16_stop_waits_for_a_method_whose_client_already_has_its_answer() -> None:
    servicer = _CleansUpAfterAnswering()
    server = GrpcServer()
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, servicer)
    await server.start()
    await _answered_then_cleaning(server, servicer)

    stopping = asyncio.create_task(server.stop(30))
    # grpc considers the call over; the stop must still wait for the method itself.
    done, _ = await asyncio.wait({stopping}, timeout=0.5)
    assert not done, "stop() returned while the method was still running"
    servicer.release.set()
    await asyncio.wait_for(stopping, 10)
    assert servicer.cleaned


async def test_item16_stop_cancels_a_method_still_running_at_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    servicer = _CleansUpAfterAnswering()
    server = GrpcServer()
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, servicer)
    await server.start()
    await _answered_then_cleaning(server, servicer)

    started = time.monotonic()
    await server.stop(0.3)  # release is never set: the cleanup is cancelled

    assert time.monotonic() - started < 5
    assert not servicer.cleaned
    assert "1 method(s) still running after the 0.3s stop timeout" in caplog.text
