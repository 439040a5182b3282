"""Server-level admission on gRPC: calls over the limit get RESOURCE_EXHAUSTED ``RATELIMIT``
before the middleware chain, and the slot frees when the admitted call ends."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from framework.errors import from_exception
from framework.metrics import setup_metrics
from framework.middleware import Handler, recovery
from framework.middleware.ratelimit import RATELIMIT, MaxInFlight
from framework.transport.grpc import GrpcServer
from tests.grpc.protos import echo_pb2, echo_pb2_grpc


async def test_calls_over_the_limit_are_refused_before_the_chain() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    chain_runs: list[str] = []

    def spy(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            chain_runs.append(request.text)
            return await handler(request)

        return run

    class Echo(echo_pb2_grpc.EchoServicer):  # type: ignore[misc,name-defined]
        async def Unary(self, request: Any, context: Any) -> Any:
            if request.text == "slow":
                entered.set()
                await release.wait()
            return echo_pb2.EchoReply(text=request.text)

    limiter = MaxInFlight(1)
    provided = setup_metrics("grpc-admission-test", set_global=False)  # observes refusals
    server = GrpcServer(port=0, middlewares=[spy, recovery()], admission=limiter)
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, Echo())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.endpoint.removeprefix("grpc://")) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            slow = asyncio.ensure_future(stub.Unary(echo_pb2.EchoRequest(text="slow")))
            await asyncio.wait_for(entered.wait(), 10)
            try:
                await stub.Unary(echo_pb2.EchoRequest(text="refused"), timeout=10)
            except grpc.aio.AioRpcError as exc:
                failure = exc
            else:
                raise AssertionError("a call over the limit was admitted")
            release.set()
            assert (await slow).text == "slow"
            after = await stub.Unary(echo_pb2.EchoRequest(text="after"), timeout=10)
            assert after.text == "after"
            exposition = provided.exposition().decode()
    finally:
        await server.stop(5)
        provided.shutdown()
    assert failure.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert from_exception(failure).reason == RATELIMIT
    assert chain_runs == ["slow", "after"]
    [refusals] = [line for line in exposition.splitlines()
                  if line.startswith("pykratos_server_refused_requests_total{")]
    assert 'pykratos_server_kind="grpc"' in refusals and refusals.endswith(" 1.0")
    assert limiter.in_flight == 0
