"""Errors raised by handlers reach gRPC clients as the mapped status and the same reason."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from framework.errors import Error, from_exception
from framework.middleware import INTERNAL_ERROR, Handler, access_log, recovery
from framework.transport.grpc import NOT_IMPLEMENTED, STATUS_DETAILS_KEY
from tests.grpc.conftest import StartServer
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2


class ErrorRecorder:
    """Middleware that records the exception each call ended with (None on success)."""

    def __init__(self) -> None:
        self.outcomes: list[BaseException | None] = []

    def __call__(self, handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            try:
                reply = await handler(request)
            except Exception as exc:
                self.outcomes.append(exc)
                raise
            self.outcomes.append(None)
            return reply

        return run


def rich_status(exc: grpc.aio.AioRpcError) -> status_pb2.Status:
    [value] = [v for k, v in exc.trailing_metadata() if k == STATUS_DETAILS_KEY]
    return status_pb2.Status.FromString(value)


async def test_error_round_trips_with_code_reason_and_metadata(start_server: StartServer) -> None:
    _, stub = await start_server(error_domain="echo-svc")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Unary(echo_pb2.EchoRequest(text="ghost", fail="error"))

    exc = caught.value
    assert exc.code() is grpc.StatusCode.NOT_FOUND
    assert exc.details() == "no echo for 'ghost'"
    error = from_exception(exc)
    assert error == Error(404, "ECHO_NOT_FOUND")
    assert error.message == "no echo for 'ghost'"
    assert error.metadata == {"text": "ghost"}
    # The rich status is the standard google.rpc.Status with an ErrorInfo detail.
    status = rich_status(exc)
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "ECHO_NOT_FOUND",
        "echo-svc",
        {"text": "ghost"},
    )
    # Reply headers set before the error still reach the client.
    assert ("x-before-error", "kept") in tuple(exc.trailing_metadata())


async def test_unexpected_exception_becomes_internal_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = ErrorRecorder()
    _, stub = await start_server(middlewares=[recovery(), recorder])

    with (
        caplog.at_level(logging.ERROR, "pykratos.recovery"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await stub.Unary(echo_pb2.EchoRequest(fail="crash"))

    assert caught.value.code() is grpc.StatusCode.INTERNAL
    error = from_exception(caught.value)
    assert (error.code, error.reason) == (500, INTERNAL_ERROR)
    assert "secret" not in (caught.value.details() or "")
    assert isinstance(recorder.outcomes[0], RuntimeError)
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)


async def test_unexpected_exception_without_recovery_is_still_mapped(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, stub = await start_server(middlewares=())

    with (
        caplog.at_level(logging.ERROR, "pykratos.grpc"),
        pytest.raises(grpc.aio.AioRpcError) as caught,
    ):
        await stub.Unary(echo_pb2.EchoRequest(fail="crash"))

    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert from_exception(caught.value).reason == INTERNAL_ERROR
    assert "secret" not in (caught.value.details() or "")
    [record] = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert (record.kind, record.operation) == ("grpc", "/echo.v1.Echo/Unary")  # type: ignore[attr-defined]


async def test_error_mid_server_stream_is_mapped_after_sent_messages(
    start_server: StartServer, echo: EchoService
) -> None:
    recorder = ErrorRecorder()
    _, stub = await start_server(middlewares=[recovery(), recorder])

    received: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for reply in stub.ServerStream(
            echo_pb2.EchoRequest(text="s", count=5, fail="error", fail_at=2)
        ):
            received.append(reply.index)

    assert received == [0, 1]
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert from_exception(caught.value).reason == "ECHO_NOT_FOUND"
    # The middleware wraps the whole stream, so it saw the mid-stream error.
    assert from_exception(recorder.outcomes[0]).reason == "ECHO_NOT_FOUND"  # type: ignore[arg-type]


async def test_crash_mid_bidi_stream_goes_through_recovery(start_server: StartServer) -> None:
    _, stub = await start_server()

    async def requests() -> Any:
        yield echo_pb2.EchoRequest(text="ok")
        yield echo_pb2.EchoRequest(text="boom", fail="crash")

    received: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for reply in stub.Bidi(requests()):
            received.append(reply.text)

    assert received == ["OK"]
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert from_exception(caught.value).reason == INTERNAL_ERROR


async def test_error_in_client_stream(start_server: StartServer) -> None:
    _, stub = await start_server()

    async def requests() -> Any:
        yield echo_pb2.EchoRequest(text="a")
        yield echo_pb2.EchoRequest(text="b", fail="error")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ClientStream(requests())

    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert from_exception(caught.value).metadata == {"text": "b"}


async def test_servicer_abort_keeps_its_status_and_middleware_sees_it(
    start_server: StartServer,
) -> None:
    recorder = ErrorRecorder()
    _, stub = await start_server(middlewares=[recovery(), access_log(), recorder])

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Unary(echo_pb2.EchoRequest(fail="abort"))

    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "not yours"
    seen = recorder.outcomes[0]
    assert isinstance(seen, Error) and seen.code == 403


async def test_unimplemented_method_is_unimplemented(start_server: StartServer) -> None:
    _, stub = await start_server()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Missing(echo_pb2.EchoRequest())

    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    error = from_exception(caught.value)
    assert (error.code, error.reason) == (501, NOT_IMPLEMENTED)
    assert "/echo.v1.Echo/Missing" in error.message


async def test_error_status_codes_follow_the_table(start_server: StartServer) -> None:
    from tests.grpc.protos import echo_pb2_grpc

    codes = {400: "INVALID_ARGUMENT", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 418: "UNKNOWN"}

    class Raiser(echo_pb2_grpc.EchoServicer):  # type: ignore[misc]
        async def Unary(self, request: Any, context: Any) -> Any:
            raise Error(int(request.text), "R")

    from framework.transport.grpc import GrpcServer

    server = GrpcServer()
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Raiser())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.endpoint.removeprefix("grpc://")) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            for http, name in codes.items():
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Unary(echo_pb2.EchoRequest(text=str(http)))
                assert caught.value.code().name == name
                assert from_exception(caught.value).reason == "R"
    finally:
        await server.stop(1.0)


async def test_error_domain_defaults_to_the_app_name(echo: EchoService) -> None:
    from framework.app import App
    from framework.transport.grpc import GrpcServer
    from tests.grpc.conftest import target
    from tests.grpc.protos import echo_pb2_grpc

    server = GrpcServer()
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo)
    async with (
        App("echo-app", servers=[server], handle_signals=False),
        grpc.aio.insecure_channel(target(server)) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest(fail="error"))
    info = error_details_pb2.ErrorInfo()
    assert rich_status(caught.value).details[0].Unpack(info)
    assert info.domain == "echo-app"
