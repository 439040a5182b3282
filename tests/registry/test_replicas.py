"""Issue 12 "Done when": replicas of the reference service in etcd, called by name.

Three ``python -m cmd.server`` processes register in a private etcd (lease TTL 3 s); a client
calls ``GetOrder`` on ``discovery:///app_template`` at a steady rate through the default
client middleware (metadata, deadline, breaker, retry):

- a rolling restart (SIGTERM each replica, start it again) ends with 0 failed calls;
- a replica killed with SIGKILL stops being called within its lease TTL, and retries keep the
  failed calls at 0;
- a replica made 10x slower (behind a delaying proxy) gets under 20 % of the calls from p2c;
- etcd restarting empty: every replica is registered again within one lease TTL.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from aetcd.exceptions import ConnectionFailedError

from framework.client import client_context, default_client_middlewares, grpc_channel
from framework.client.grpc import GrpcClientChannel
from framework.errors import Error
from framework.middleware import Handler
from framework.registry.etcd import EtcdRegistry
from tests.registry.etcd_server import EtcdServer
from tests.registry.replicas import DelayProxy, Replica

from app_template.api.order.v1 import order_pb2, order_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TTL = 3
SERVICE = "app_template"


@dataclass
class Load:
    """Calls GetOrder at a steady rate (closed loop, paced) and records what happened."""

    stub: Any
    order_id: str
    rate: float = 100.0
    ok: int = 0
    failed: list[Error] = field(default_factory=list)
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    attempts: list[tuple[float, str]] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def outermost(self, handler: Handler) -> Handler:
        """Sees each logical call: which instance finally served it."""

        async def run(request: Any) -> Any:
            reply = await handler(request)
            call = client_context()
            assert call is not None
            self.served[call.endpoint] += 1
            return reply

        return run

    def innermost(self, handler: Handler) -> Handler:
        """Sees each attempt (retries included): when, where, how long."""

        async def run(request: Any) -> Any:
            started = time.monotonic()
            try:
                return await handler(request)
            finally:
                call = client_context()
                assert call is not None
                self.attempts.append((started, call.endpoint))
                self.latency[call.endpoint].append(time.monotonic() - started)

        return run

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        tick = 1 / self.rate
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                reply = await self.stub.GetOrder(order_pb2.GetOrderRequest(id=self.order_id))
                assert reply.id == self.order_id
                self.ok += 1
            except Error as exc:
                self.failed.append(exc)
            due += tick
            await asyncio.sleep(max(due - time.monotonic(), 0))


@dataclass
class Cluster:
    etcd: EtcdServer
    replicas: list[Replica]
    registry: EtcdRegistry
    order_id: str
    log_dir: Path

    async def registered(self) -> set[str]:
        return {i.endpoint("grpc") or "" for i in await self.registry.get_service(SERVICE)}

    async def wait_registered(self, addresses: set[str], timeout: float) -> float:
        started = time.monotonic()
        seen: set[str] | str = "nothing yet"
        while True:
            try:
                seen = await self.registered()
            except ConnectionFailedError as exc:
                # This test's own etcd client right after an etcd restart: its channel may
                # still report the refused connection. Not what is measured; ask again.
                seen = f"etcd not reachable yet ({exc})"
            if seen == addresses:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"registered {seen}, want {addresses}")
            await asyncio.sleep(0.05)

    async def wait_served(self, load: Load, address: str, before: int, timeout: float) -> float:
        """Seconds until ``address`` serves a call again (the client saw it come back)."""
        started = time.monotonic()
        while load.served[address] <= before:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{address} got no calls within {timeout:.0f}s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def client(self, load_rate: float = 100.0) -> tuple[GrpcClientChannel, Load]:
        load = Load(None, self.order_id, load_rate)
        channel = await grpc_channel(
            f"discovery:///{SERVICE}",
            discovery=self.registry,
            middlewares=[load.outermost, *default_client_middlewares(5.0), load.innermost],
        )
        load.stub = order_pb2_grpc.OrderServiceStub(channel)
        return channel, load


async def _start_cluster(
    etcd: EtcdServer, tmp_path: Path, advertise: list[str] | None = None
) -> Cluster:
    namespace = f"/pykratos-test-{uuid.uuid4().hex[:8]}"
    database = f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"
    hosts = advertise or ["127.0.0.1"] * 3
    replicas = [
        Replica(f"r{i}", etcd.address, namespace, database, ttl=TTL, advertise_host=host)
        for i, host in enumerate(hosts)
    ]
    # The first one creates the schema and the order; the others share the database file.
    await replicas[0].start(tmp_path)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{replicas[0].http_port}") as http:
        created = await http.post("/v1/orders", json={"customer_id": "c1", "amount_cents": 100})
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
    await asyncio.gather(*(r.start(tmp_path) for r in replicas[1:]))
    registry = EtcdRegistry(etcd.address, namespace=namespace, ttl=TTL)
    cluster = Cluster(etcd, replicas, registry, order_id, tmp_path)
    return cluster


@pytest.fixture
async def cluster(etcd: EtcdServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = await _start_cluster(etcd, tmp_path)
    try:
        await cluster.wait_registered({r.grpc_address for r in cluster.replicas}, 10)
        yield cluster
    finally:
        await asyncio.gather(*(r.kill() for r in cluster.replicas))
        await cluster.registry.close()


async def test_rolling_restart_loses_no_call(cluster: Cluster) -> None:
    channel, load = await cluster.client()
    load.start()
    try:
        await asyncio.sleep(1)
        for replica in cluster.replicas:
            assert await replica.terminate() == 0
            await replica.start(cluster.log_dir)
            await cluster.wait_registered({r.grpc_address for r in cluster.replicas}, TTL)
            before = load.served[replica.grpc_address]
            # The client learns of it through its watch; a new node is tried at once or, at the
            # latest, by the balancer's forced pick. Bounded, generous for a loaded machine.
            await cluster.wait_served(load, replica.grpc_address, before, 3 * TTL)
    finally:
        await load.stop()
        await channel.close()
    assert load.failed == []
    assert load.ok > 500


async def test_sigkill_drops_the_replica_within_its_ttl_without_failed_calls(
    cluster: Cluster,
) -> None:
    channel, load = await cluster.client()
    load.start()
    victim = cluster.replicas[1]
    try:
        await asyncio.sleep(1)
        assert victim.proc is not None
        victim.proc.kill()
        killed = time.monotonic()
        await victim.proc.wait()
        while victim.grpc_address in {n.address for n in channel.nodes}:
            assert time.monotonic() - killed < TTL + 1, "still balanced over after its TTL"
            await asyncio.sleep(0.05)
        gone = time.monotonic()
        await asyncio.sleep(1)
    finally:
        await load.stop()
        await channel.close()
    assert load.failed == []
    tried = [t for t, address in load.attempts if address == victim.grpc_address and t > gone]
    assert tried == [], "attempts went to the dead replica after its entry expired"
    assert gone - killed <= TTL + 1


async def test_p2c_sends_few_calls_to_a_slow_replica(etcd: EtcdServer, tmp_path: Path) -> None:
    # Replica 2 registers as 127.0.0.2; a proxy there delays what is sent to it.
    cluster = await _start_cluster(etcd, tmp_path, ["127.0.0.1", "127.0.0.1", "127.0.0.2"])
    slow = cluster.replicas[2]
    proxy: DelayProxy | None = None
    try:
        fast = [r.grpc_address for r in cluster.replicas[:2]]
        slow_address = f"127.0.0.2:{slow.grpc_port}"
        await cluster.wait_registered({*fast, slow_address}, 10)
        # The fast replicas' own latency sets the proxy's delay: generous (20x, at least
        # 50 ms), since calls under load take longer than these quiet ones; the check below is
        # on what the load itself measured: the slow replica must be at least 10x slower.
        async with grpc.aio.insecure_channel(fast[0]) as direct:
            stub = order_pb2_grpc.OrderServiceStub(direct)
            samples = []
            for _ in range(100):
                started = time.monotonic()
                await stub.GetOrder(order_pb2.GetOrderRequest(id=cluster.order_id))
                samples.append(time.monotonic() - started)
        base = statistics.median(samples)
        # At least 50 ms: a quiet median of ~1.4 ms gave 28 ms, and under CI load the fast
        # replicas took 2.9 ms, leaving the "slow" one under 10x slower.
        delay = max(20 * base, 0.05)
        proxy = DelayProxy("127.0.0.2", slow.grpc_port, ("127.0.0.1", slow.grpc_port), delay)
        await proxy.start()
        channel, load = await cluster.client()
        load.start()
        await asyncio.sleep(8)
        await load.stop()
        await channel.close()
        assert load.failed == []
        fast_latency = statistics.median([x for a in fast for x in load.latency[a]])
        slow_latency = statistics.median(load.latency[slow_address])
        assert slow_latency >= 10 * fast_latency, (slow_latency, fast_latency)
        total = sum(load.served.values())
        share = load.served[slow_address] / total
        print(
            f"slow replica share {share:.1%} of {total} calls; "
            f"latency {slow_latency * 1000:.1f} ms vs {fast_latency * 1000:.1f} ms"
        )
        assert share < 0.20
    finally:
        if proxy is not None:
            await proxy.stop()
        await asyncio.gather(*(r.kill() for r in cluster.replicas))
        await cluster.registry.close()


async def test_every_replica_registers_again_after_etcd_restarts_empty(cluster: Cluster) -> None:
    channel, load = await cluster.client()
    load.start()
    everyone = {r.grpc_address for r in cluster.replicas}
    try:
        await asyncio.sleep(1)
        cluster.etcd.stop(wipe=True)
        await asyncio.sleep(2)
        cluster.etcd.start()
        back = time.monotonic()
        took = await cluster.wait_registered(everyone, TTL + 2)
        elapsed = time.monotonic() - back
        print(f"all registered again {elapsed:.2f}s after etcd came back ({took:.2f}s waited)")
        assert elapsed <= TTL, f"registered again only after {elapsed:.1f}s"
        await asyncio.sleep(1)
    finally:
        await load.stop()
        await channel.close()
    assert load.failed == []  # the client kept its nodes while etcd was away
