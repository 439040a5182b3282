"""Issue 8 item 15 (gRPC): a servicer never gets a bare dependency-injector marker.

A method with an unwired ``Provide[...]`` parameter, or a servicer built by calling its class
while its constructor's markers were never wired, stops the start naming the method.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject

from framework.di import WiringError
from framework.transport.grpc import GrpcServer
from tests.grpc.conftest import target
from tests.grpc.protos import echo_pb2, echo_pb2_grpc


class Greeting:
    word = "hello"


class Container(containers.DeclarativeContainer):
    greeting = providers.Singleton(Greeting)


class MethodInjected(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
    @inject
    async def Unary(
        self, request: Any, context: Any, greeting: Greeting = Provide["greeting"]
    ) -> Any:
        return echo_pb2.EchoReply(text=f"{greeting.word} {request.text}")


class ConstructorInjected(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
    @inject
    def __init__(self, greeting: Greeting = Provide["greeting"]) -> None:
        self.greeting = greeting

    async def Unary(self, request: Any, context: Any) -> Any:
        return echo_pb2.EchoReply(text=f"{self.greeting.word} {request.text}")


class ForgotInject(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
    async def Unary(
        self, request: Any, context: Any, greeting: Greeting = Provide["greeting"]
    ) -> Any:
        return echo_pb2.EchoReply(text=str(greeting))


@pytest.fixture
def wired() -> Iterator[None]:
    container = Container()
    container.wire(modules=[__name__])
    yield
    container.unwire()


def server_for(servicer: Any) -> GrpcServer:
    server = GrpcServer()
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, servicer)
    return server


async def test_item15_unwired_method_fails_at_start_naming_the_method() -> None:
    server = server_for(MethodInjected())
    with pytest.raises(
        WiringError, match=r"gRPC method /echo\.v1\.Echo/Unary .*MethodInjected\.Unary.*never wired"
    ):
        await server.start()
    await server.stop(1)  # safe after a refused start


async def test_item15_method_without_inject_fails_at_start() -> None:
    with pytest.raises(WiringError, match=r"ForgotInject\.Unary.*not @inject-decorated"):
        await server_for(ForgotInject()).start()


async def test_item15_servicer_built_without_wiring_fails_at_start() -> None:
    servicer = ConstructorInjected()  # module not wired: self.greeting is the bare marker
    with pytest.raises(WiringError, match=r"/echo\.v1\.Echo/.*attribute 'greeting'"):
        await server_for(servicer).start()


@pytest.mark.usefixtures("wired")
@pytest.mark.parametrize("servicer_class", [MethodInjected, ConstructorInjected])
async def test_item15_wired_servicers_get_their_dependencies(servicer_class: type) -> None:
    server = server_for(servicer_class())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(target(server)) as channel:
            reply = await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest(text="you"))
    finally:
        await server.stop(5)
    assert reply.text == "hello you"
