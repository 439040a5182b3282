"""The discovery gRPC channel: balancing, error mapping, metadata, deadline, retry, breaker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from framework import errors
from framework.client import (
    CIRCUITBREAKER,
    NO_AVAILABLE_NODE,
    GrpcClientChannel,
    Random,
    circuit_breaker,
    default_client_middlewares,
    grpc_channel,
    retry,
)
from framework.client.filters import version
from framework.metadata import client_metadata, incoming, outgoing, server_metadata
from framework.middleware import recovery
from framework.registry import ServiceInstance, StaticDiscovery
from framework.transport.grpc import GrpcServer
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2, echo_pb2_grpc
from tests.services import free_port


class Recorder(EchoService):
    """Echo that answers with its name and the metadata it received; can call downstream."""

    def __init__(self, name: str, downstream: Any = None, delay: float = 0.0) -> None:
        super().__init__()
        self.name = name
        self.downstream = downstream
        self.delay = delay
        self.calls = 0
        self.remaining: list[float | None] = []

    async def Unary(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.fail:
            return await super().Unary(request, context)
        from framework.client.deadline import remaining

        self.remaining.append(remaining())
        seen: dict[str, Any] = {"server": self.name, "md": dict(incoming())}
        if self.downstream is not None:
            reply = await self.downstream.Unary(echo_pb2.EchoRequest(text="down"))
            seen["downstream"] = json.loads(reply.text)
        return echo_pb2.EchoReply(text=json.dumps(seen))


async def _serve(
    service: Recorder, name: str, version_: str = "v1"
) -> tuple[GrpcServer, ServiceInstance]:
    server = GrpcServer("127.0.0.1", 0, middlewares=[recovery(), server_metadata()])
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, service)
    await server.start()
    instance = ServiceInstance(name, "echo", version_, {}, (server.endpoint,))
    return server, instance


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[StaticDiscovery, list[Recorder], list[GrpcServer]]]:
    registry = StaticDiscovery()
    services = [Recorder(f"s{i}") for i in range(3)]
    servers = []
    for i, service in enumerate(services):
        server, instance = await _serve(service, f"s{i}", "v2" if i == 2 else "v1")
        servers.append(server)
        await registry.register(instance)
    yield registry, services, servers
    for server in servers:
        await server.stop(1)


async def test_calls_spread_over_discovered_instances_and_follow_the_registry(cluster: Any) -> None:
    registry, services, _servers = cluster
    async with await grpc_channel(
        "discovery:///echo", discovery=registry, balancer=Random()
    ) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        for _ in range(60):
            await stub.Unary(echo_pb2.EchoRequest(text="x"))
        assert all(s.calls > 5 for s in services)
        await registry.deregister(ServiceInstance("s0", "echo"))
        await asyncio.sleep(0)  # the watcher's update
        before = services[0].calls
        for _ in range(30):
            await stub.Unary(echo_pb2.EchoRequest(text="x"))
        assert services[0].calls == before


async def test_version_filter(cluster: Any) -> None:
    registry, services, _ = cluster
    async with await grpc_channel(
        "discovery:///echo", discovery=registry, filters=[version("v2")]
    ) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        for _ in range(10):
            await stub.Unary(echo_pb2.EchoRequest(text="x"))
        assert [s.calls for s in services] == [0, 0, 10]


async def test_errors_come_back_as_framework_errors(cluster: Any) -> None:
    registry, _, _ = cluster
    async with await grpc_channel("discovery:///echo", discovery=registry) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        with pytest.raises(errors.Error) as caught:
            await stub.Unary(echo_pb2.EchoRequest(text="t", fail="error"))
        assert (caught.value.code, caught.value.reason) == (404, "ECHO_NOT_FOUND")
        assert caught.value.metadata == {"text": "t"}
    empty = GrpcClientChannel("discovery:///nobody", discovery=registry)
    await empty.start(resolve_timeout=0.05)
    with pytest.raises(errors.Error) as caught:
        await echo_pb2_grpc.EchoStub(empty).Unary(echo_pb2.EchoRequest(text="t"))
    assert (caught.value.code, caught.value.reason) == (503, NO_AVAILABLE_NODE)
    await empty.close()


async def test_global_metadata_travels_every_hop_local_only_one() -> None:
    last = Recorder("last")
    last_server, last_instance = await _serve(last, "last")
    registry = StaticDiscovery({"last": [last_instance]})
    downstream_channel = await grpc_channel(
        "discovery:///last", discovery=registry, middlewares=[client_metadata()]
    )
    middle = Recorder("middle", downstream=echo_pb2_grpc.EchoStub(downstream_channel))
    middle_server, _middle_instance = await _serve(middle, "middle")
    try:
        async with await grpc_channel(
            middle_server.endpoint, middlewares=[client_metadata({"x-md-global-app": "shop"})]
        ) as channel:
            with outgoing({"x-md-global-user": "u1", "x-md-local-hop": "1"}):
                reply = await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest())
        seen = json.loads(reply.text)
        assert seen["md"] == {
            "x-md-global-app": "shop",
            "x-md-global-user": "u1",
            "x-md-local-hop": "1",
        }
        # The local entry stopped after one hop; the global ones went on.
        assert seen["downstream"]["md"] == {"x-md-global-app": "shop", "x-md-global-user": "u1"}
        with pytest.raises(ValueError), outgoing({"user": "x"}):
            pass
    finally:
        await downstream_channel.close()
        await middle_server.stop(1)
        await last_server.stop(1)


async def test_deadline_is_propagated_and_enforced() -> None:
    last = Recorder("last", delay=0.0)
    last_server, last_instance = await _serve(last, "last")
    registry = StaticDiscovery({"last": [last_instance]})
    downstream = await grpc_channel(
        "discovery:///last", discovery=registry, middlewares=default_client_middlewares(30.0)
    )
    middle = Recorder("middle", downstream=echo_pb2_grpc.EchoStub(downstream))
    middle_server, _ = await _serve(middle, "middle")
    slow = Recorder("slow", delay=1.0)
    slow_server, _ = await _serve(slow, "slow")
    try:
        async with await grpc_channel(
            middle_server.endpoint, middlewares=default_client_middlewares(2.0)
        ) as channel:
            await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest())
        # The downstream call got what was left of the caller's 2 s, not its own 30 s.
        [left] = last.remaining
        # gRPC core writes `grpc-timeout` rounded *up* to 10 ms units between 1 s and 10 s, so
        # each of the two hops may add up to 10 ms; 2.05 s still proves the 30 s was not used.
        assert left is not None and 0.5 < left <= 2.05
        async with await grpc_channel(
            slow_server.endpoint, middlewares=default_client_middlewares(0.2)
        ) as channel:
            with pytest.raises(errors.Error) as caught:
                await echo_pb2_grpc.EchoStub(channel).Unary(echo_pb2.EchoRequest())
            assert caught.value.code == 504
    finally:
        await downstream.close()
        for server in (middle_server, last_server, slow_server):
            await server.stop(1)


async def test_retry_fails_over_from_a_dead_instance(cluster: Any) -> None:
    registry, _services, _ = cluster
    dead = ServiceInstance("dead", "echo", "v1", {}, (f"grpc://127.0.0.1:{free_port()}",))
    await registry.register(dead)
    async with await grpc_channel(
        "discovery:///echo", discovery=registry, balancer=Random(), middlewares=[retry()]
    ) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        for _ in range(40):
            await stub.Unary(echo_pb2.EchoRequest(text="x"))  # never raises
    # Without retries the same traffic fails whenever the dead one is picked.
    failures = 0
    async with await grpc_channel(
        "discovery:///echo", discovery=registry, balancer=Random()
    ) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        for _ in range(40):
            try:
                await stub.Unary(echo_pb2.EchoRequest(text="x"))
            except errors.Error as exc:
                assert exc.code == 503
                failures += 1
    assert failures > 0
    # A non-idempotent operation is not retried.
    async with await grpc_channel(
        "discovery:///echo",
        discovery=registry,
        balancer=Random(),
        middlewares=[retry(idempotent=())],
    ) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        results = await asyncio.gather(
            *(stub.Unary(echo_pb2.EchoRequest(text="x")) for _ in range(40)),
            return_exceptions=True,
        )
        assert any(isinstance(r, errors.Error) for r in results)


async def test_breaker_opens_on_a_failing_operation_only() -> None:
    registry = StaticDiscovery()
    port = free_port()  # nothing listens: every call fails with 503
    await registry.register(ServiceInstance("x", "echo", endpoints=(f"grpc://127.0.0.1:{port}",)))
    async with await grpc_channel(
        "discovery:///echo",
        discovery=registry,
        middlewares=[circuit_breaker(min_requests=20, window=10.0)],
    ) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        reasons = []
        for _ in range(200):
            try:
                await stub.Unary(echo_pb2.EchoRequest(text="x"))
            except errors.Error as exc:
                assert exc.code == 503
                reasons.append(exc.reason)
        assert len(reasons) == 200
        assert reasons.count(CIRCUITBREAKER) > 100, "the breaker should reject most calls"
        assert reasons[:20].count(CIRCUITBREAKER) == 0  # nothing rejected under min_requests


async def test_streaming_calls_reach_a_picked_node(cluster: Any) -> None:
    registry, _, _ = cluster
    async with await grpc_channel("discovery:///echo", discovery=registry) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        replies = [
            r.index async for r in stub.ServerStream(echo_pb2.EchoRequest(text="a", count=3))
        ]
        assert replies == [0, 1, 2]
