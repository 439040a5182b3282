"""Standard health service following readiness, and server reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from framework.app import App
from framework.transport.grpc import GrpcServer
from tests.grpc.conftest import StartServer, target
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
ECHO = "echo.v1.Echo"


async def check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def test_health_follows_set_serving(start_server: StartServer) -> None:
    server, _ = await start_server()
    async with grpc.aio.insecure_channel(target(server)) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert [await check(health, s) for s in ("", ECHO)] == [NOT_SERVING, NOT_SERVING]

        server.set_serving(True)
        assert [await check(health, s) for s in ("", ECHO)] == [SERVING, SERVING]

        server.set_serving(False)
        assert [await check(health, s) for s in ("", ECHO)] == [NOT_SERVING, NOT_SERVING]

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await check(health, "nope.v1.Nope")
        assert caught.value.code() is grpc.StatusCode.NOT_FOUND

        listed = await health.List(health_pb2.HealthListRequest(), timeout=5)
        assert {k: v.status for k, v in listed.statuses.items()} == {
            "": NOT_SERVING,
            ECHO: NOT_SERVING,
        }


async def test_health_watch_follows_the_app_and_ends_on_stop(echo: EchoService) -> None:
    server = GrpcServer()
    assert server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo) == (ECHO,)
    app = App("echo", servers=[server], handle_signals=False, stop_timeout=5)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(target(server)) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert await check(health, ECHO) == SERVING
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert (await watch.read()).status == SERVING

            server.set_serving(False)
            assert (await watch.read()).status == NOT_SERVING
            server.set_serving(True)
            assert (await watch.read()).status == SERVING

            unknown = health.Watch(health_pb2.HealthCheckRequest(service="x.Y"), timeout=10)
            assert (await unknown.read()).status == SERVICE_UNKNOWN

            # The App marks the server not ready before stopping it; the watch then ends
            # cleanly instead of holding the graceful stop for the whole timeout.
            await app.shutdown()
            assert (await watch.read()).status == NOT_SERVING
            assert await watch.read() is grpc.aio.EOF
            assert await watch.code() is grpc.StatusCode.OK
            assert await unknown.read() is grpc.aio.EOF
    finally:
        await app.shutdown()


async def test_reflection_lists_registered_services(start_server: StartServer) -> None:
    server, _ = await start_server()
    async with grpc.aio.insecure_channel(target(server)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask(**kwargs: str) -> reflection_pb2.ServerReflectionResponse:
            call = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(**kwargs)]), timeout=5
            )
            responses = [response async for response in call]
            return responses[0]

        listed = await ask(list_services="")
        names = {s.name for s in listed.list_services_response.service}
        assert names == {
            ECHO,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        described = await ask(file_containing_symbol=ECHO)
        assert described.file_descriptor_response.file_descriptor_proto


async def test_reflection_can_be_turned_off(start_server: StartServer) -> None:
    server, _ = await start_server(reflection=False)
    async with grpc.aio.insecure_channel(target(server)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [_ async for _ in call]
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
