"""Every RPC kind through GrpcServer, with the middleware chain and the transport context."""

from __future__ import annotations

from typing import Any

import grpc

from framework.middleware import Handler, Middleware, selector
from framework.transport.context import Transport, from_context
from tests.grpc.conftest import StartServer
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2

UNARY = "/echo.v1.Echo/Unary"
SERVER_STREAM = "/echo.v1.Echo/ServerStream"
CLIENT_STREAM = "/echo.v1.Echo/ClientStream"
BIDI = "/echo.v1.Echo/Bidi"


class Recorder:
    """A middleware that records what it saw and adds a reply header."""

    def __init__(self, events: list[str] | None = None) -> None:
        self.transports: list[Transport] = []
        self.requests: list[Any] = []
        self.replies: list[Any] = []
        self.events = events if events is not None else []

    def __call__(self, handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = from_context()
            assert transport is not None
            self.transports.append(transport)
            self.requests.append(request)
            self.events.append("mw before")
            reply = await handler(request)
            self.events.append("mw after")
            self.replies.append(reply)
            transport.reply_headers["x-served-by"] = "pykratos"
            return reply

        return run


def requests(*texts: str) -> Any:
    async def gen() -> Any:
        for text in texts:
            yield echo_pb2.EchoRequest(text=text)

    return gen()


async def test_unary_runs_the_chain_with_the_transport_context(
    start_server: StartServer, echo: EchoService
) -> None:
    recorder = Recorder(echo.events)
    server, stub = await start_server(middlewares=[recorder])
    assert server.endpoint.startswith("grpc://127.0.0.1:")
    assert not server.endpoint.endswith(":0")

    call = stub.Unary(echo_pb2.EchoRequest(text="hi"), metadata=(("x-user", "ann"),))
    reply = await call

    assert reply.text == "hi"
    [transport] = recorder.transports
    assert transport.kind == "grpc"
    assert transport.operation == UNARY
    assert transport.request_headers["x-user"] == "ann"
    assert transport.endpoint == server.endpoint
    assert transport.raw is not None and hasattr(transport.raw, "invocation_metadata")
    assert recorder.requests[0].text == "hi"
    assert recorder.replies[0].text == "hi"
    assert echo.events == ["mw before", "handler", "mw after"]
    assert ("x-served-by", "pykratos") in tuple(await call.trailing_metadata())


async def test_server_streaming_is_wrapped_as_a_whole(
    start_server: StartServer, echo: EchoService
) -> None:
    recorder = Recorder(echo.events)
    _, stub = await start_server(middlewares=[recorder])

    call = stub.ServerStream(echo_pb2.EchoRequest(text="s", count=3))
    replies = [reply async for reply in call]

    assert [(r.text, r.index) for r in replies] == [("s", 0), ("s", 1), ("s", 2)]
    assert recorder.transports[0].operation == SERVER_STREAM
    assert recorder.requests[0].count == 3
    assert recorder.replies == [None]
    # The middleware returned only after the last message was produced and written.
    assert echo.events == ["mw before", "yield 0", "yield 1", "yield 2", "mw after"]
    assert ("x-served-by", "pykratos") in tuple(await call.trailing_metadata())


async def test_client_streaming(start_server: StartServer) -> None:
    recorder = Recorder()
    _, stub = await start_server(middlewares=[recorder])

    call = stub.ClientStream(requests("a", "b", "c"))
    reply = await call

    assert (reply.text, reply.index) == ("abc", 3)
    assert recorder.transports[0].operation == CLIENT_STREAM
    assert hasattr(recorder.requests[0], "__aiter__")
    assert recorder.replies[0].text == "abc"
    assert ("x-served-by", "pykratos") in tuple(await call.trailing_metadata())


async def test_bidi_streaming(start_server: StartServer) -> None:
    recorder = Recorder()
    _, stub = await start_server(middlewares=[recorder])

    call = stub.Bidi(requests("x", "y"))
    replies = [reply async for reply in call]

    assert [(r.text, r.index) for r in replies] == [("X", 0), ("Y", 1)]
    assert recorder.transports[0].operation == BIDI
    assert recorder.replies == [None]
    assert ("x-served-by", "pykratos") in tuple(await call.trailing_metadata())


async def test_reader_writer_api_servicer_is_supported(start_server: StartServer) -> None:
    from tests.grpc.protos import echo_pb2_grpc

    class Writer(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
        async def ServerStream(self, request: Any, context: Any) -> None:
            for index in range(request.count):
                await context.write(echo_pb2.EchoReply(text="w", index=index))

    from framework.transport.grpc import GrpcServer

    server = GrpcServer(middlewares=[])
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Writer())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.endpoint.removeprefix("grpc://")) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            replies = [r.index async for r in stub.ServerStream(echo_pb2.EchoRequest(count=2))]
        assert replies == [0, 1]
    finally:
        await server.stop(1.0)


def tagger(tag: str, seen: list[str]) -> Middleware:
    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            seen.append(tag)
            return await handler(request)

        return run

    return middleware


async def test_selector_matches_grpc_operations(start_server: StartServer) -> None:
    seen: list[str] = []
    _, stub = await start_server(
        middlewares=[
            selector(tagger("prefix", seen)).prefix("/echo.v1.Echo/").build(),
            selector(tagger("exact", seen)).path(UNARY).build(),
            selector(tagger("regex", seen)).regex(r"/echo\.v1\.Echo/\w+Stream").build(),
            selector(tagger("other-kind", seen)).prefix("/").kind("http").build(),
            selector(tagger("other-service", seen)).prefix("/order.v1.").build(),
        ]
    )

    await stub.Unary(echo_pb2.EchoRequest(text="u"))
    assert seen == ["prefix", "exact"]

    seen.clear()
    [_ async for _ in stub.ServerStream(echo_pb2.EchoRequest(count=1))]
    assert seen == ["prefix", "regex"]

    seen.clear()
    await stub.ClientStream(requests("c"))
    assert seen == ["prefix", "regex"]

    seen.clear()
    [_ async for _ in stub.Bidi(requests("b"))]
    assert seen == ["prefix"]


async def test_no_middleware_still_sets_the_transport_context(start_server: StartServer) -> None:
    from tests.grpc.protos import echo_pb2_grpc

    seen: list[Transport | None] = []

    class Peek(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
        async def Unary(self, request: Any, context: Any) -> Any:
            seen.append(from_context())
            return echo_pb2.EchoReply(text=request.text)

    from framework.transport.grpc import GrpcServer

    server = GrpcServer(middlewares=())
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Peek())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.endpoint.removeprefix("grpc://")) as channel:
            await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest(text="p"))
    finally:
        await server.stop(1.0)
    assert seen[0] is not None and seen[0].operation == UNARY
    assert from_context() is None
