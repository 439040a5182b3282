"""Fixtures: a started GrpcServer with the echo service, and a client stub for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from framework.transport.grpc import GrpcServer
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2_grpc

StartServer = Callable[..., Awaitable[tuple[GrpcServer, Any]]]


def target(server: GrpcServer) -> str:
    """The channel target for a started server (its endpoint without the scheme)."""
    return server.endpoint.removeprefix("grpc://")


@pytest.fixture
def echo() -> EchoService:
    return EchoService()


@pytest.fixture
async def start_server(echo: EchoService) -> AsyncIterator[StartServer]:
    """Start a GrpcServer serving ``echo`` (kwargs go to GrpcServer); return it and a stub."""
    servers: list[GrpcServer] = []
    channels: list[grpc.aio.Channel] = []

    async def start(**kwargs: Any) -> tuple[GrpcServer, Any]:
        server = GrpcServer(**kwargs)
        server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo)
        servers.append(server)
        await server.start()
        channel = grpc.aio.insecure_channel(target(server))
        channels.append(channel)
        return server, echo_pb2_grpc.EchoStub(channel)

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(1.0)
