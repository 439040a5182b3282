"""Issue 8 items 8 and 11 (gRPC): bad request bytes and oversized messages are client errors.

Undecodable bytes are sent over a raw channel with identity serializers, as a hostile client
would; every RPC kind must answer INVALID_ARGUMENT ``MALFORMED_REQUEST``, never UNKNOWN, and
the log gets one WARNING per method at most, never a stack trace per call.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest

from framework.errors import PAYLOAD_TOO_LARGE, from_exception
from framework.middleware import access_log, recovery
from framework.transport.grpc import GrpcServer
from framework.transport.grpc.decode import MALFORMED_REQUEST
from framework.transport.grpc.server import DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH
from tests.grpc.conftest import StartServer, target
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2, echo_pb2_grpc

CORRUPT = b"\x0a\x7fabc"  # field 1, length 127, then 3 bytes: wire format corrupt
VALID = echo_pb2.EchoRequest(text="ok").SerializeToString()


async def _raw_call(channel: grpc.aio.Channel, kind: str, method: str, body: list[bytes]) -> Any:
    """Call ``method`` with raw request bytes (no serializer); return the reply or the error."""
    path = f"/echo.v1.Echo/{method}"
    try:
        if kind == "unary_unary":
            return await channel.unary_unary(path)(body[0])
        if kind == "unary_stream":
            return [reply async for reply in channel.unary_stream(path)(body[0])]
        if kind == "stream_unary":
            return await channel.stream_unary(path)(iter(body))
        return [reply async for reply in channel.stream_stream(path)(iter(body))]
    except grpc.aio.AioRpcError as exc:
        return exc


def _grpc_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # grpc logs servicer crashes under grpc._cython.cygrpc; ours go to pykratos.*.
    return [r for r in caplog.records if r.name.startswith(("grpc", "pykratos"))]


@pytest.mark.parametrize(
    ("kind", "method", "body"),
    [
        ("unary_unary", "Unary", [CORRUPT]),
        ("unary_stream", "ServerStream", [CORRUPT]),
        ("stream_unary", "ClientStream", [VALID, CORRUPT]),
        ("stream_stream", "Bidi", [VALID, CORRUPT]),
    ],
)
async def test_item8_undecodable_request_is_invalid_argument_on_every_rpc_kind(
    start_server: StartServer,
    echo: EchoService,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    method: str,
    body: list[bytes],
) -> None:
    server, _ = await start_server(middlewares=[recovery(), access_log()])
    caplog.set_level(logging.DEBUG)
    async with grpc.aio.insecure_channel(target(server)) as channel:
        outcome = await _raw_call(channel, kind, method, body)

    assert isinstance(outcome, grpc.aio.AioRpcError)
    assert outcome.code() is grpc.StatusCode.INVALID_ARGUMENT
    error = from_exception(outcome)
    assert (error.code, error.reason) == (400, MALFORMED_REQUEST)
    assert "Echo" in error.message and "corrupt" not in error.message  # no decoder internals
    assert not [r for r in _grpc_records(caplog) if r.levelno >= logging.ERROR]
    assert not [r for r in _grpc_records(caplog) if r.exc_info]
    warnings = [r for r in caplog.records if r.name == "pykratos.grpc" and r.levelno >= 30]
    assert len(warnings) == 1
    assert f"/echo.v1.Echo/{method}" in warnings[0].getMessage()
    assert "DecodeError" in warnings[0].getMessage()
    if kind == "unary_unary":
        assert echo.events == []  # the servicer never ran


async def test_item8_a_flood_of_undecodable_requests_logs_one_warning_per_method(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server, stub = await start_server(middlewares=[recovery(), access_log()])
    caplog.set_level(logging.DEBUG)
    async with grpc.aio.insecure_channel(target(server)) as channel:
        for _ in range(50):
            outcome = await _raw_call(channel, "unary_unary", "Unary", [CORRUPT])
            assert outcome.code() is grpc.StatusCode.INVALID_ARGUMENT
        outcome = await _raw_call(channel, "unary_stream", "ServerStream", [CORRUPT])
        assert outcome.code() is grpc.StatusCode.INVALID_ARGUMENT
        # Valid calls still work on the same channel and method.
        assert (await stub.Unary(echo_pb2.EchoRequest(text="fine"))).text == "fine"

    records = [r for r in _grpc_records(caplog) if r.levelno >= logging.WARNING]
    assert [r.levelno for r in records] == [logging.WARNING, logging.WARNING]
    assert [r.operation for r in records] == [  # type: ignore[attr-defined]
        "/echo.v1.Echo/Unary",
        "/echo.v1.Echo/ServerStream",
    ]


async def test_item8_reader_api_servicer_gets_the_error_not_a_marker() -> None:
    class Reader(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
        async def ClientStream(self, request_iterator: Any, context: Any) -> Any:
            texts = []
            while (message := await context.read()) is not grpc.aio.EOF:
                texts.append(message.text)  # a marker here would be AttributeError -> 500
            return echo_pb2.EchoReply(text="".join(texts))

    server = GrpcServer(middlewares=[recovery()])
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Reader())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(target(server)) as channel:
            outcome = await _raw_call(channel, "stream_unary", "ClientStream", [VALID, CORRUPT])
    finally:
        await server.stop(1)
    assert outcome.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert from_exception(outcome).reason == MALFORMED_REQUEST


async def test_item11_grpc_message_over_the_limit_is_resource_exhausted(
    start_server: StartServer, echo: EchoService
) -> None:
    _, stub = await start_server(max_receive_message_length=1000)
    at_limit = echo_pb2.EchoRequest(text="x" * 997)  # 3 bytes of tag and length
    assert at_limit.ByteSize() == 1000
    assert (await stub.Unary(at_limit)).text == at_limit.text

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Unary(echo_pb2.EchoRequest(text="x" * 998))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    error = from_exception(caught.value)
    assert (error.code, error.reason) == (413, PAYLOAD_TOO_LARGE)
    assert echo.events == ["handler"]  # only the call at the limit ran


async def test_item11_grpc_default_limit_is_one_mebibyte(start_server: StartServer) -> None:
    server, stub = await start_server()
    assert server.max_receive_message_length == DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH == 1 << 20
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Unary(echo_pb2.EchoRequest(text="x" * (1 << 20)))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_item11_grpc_limit_from_options_is_read_and_conflicts_are_refused() -> None:
    option = "grpc.max_receive_message_length"
    server = GrpcServer(options=[(option, 4096)])
    assert server.max_receive_message_length == 4096
    assert [value for key, value in server.options if key == option] == [4096]
    assert GrpcServer(max_receive_message_length=2048).options.count((option, 2048)) == 1
    with pytest.raises(ValueError, match="both"):
        GrpcServer(options=[(option, 4096)], max_receive_message_length=2048)
    with pytest.raises(ValueError, match="positive"):
        GrpcServer(max_receive_message_length=0)
