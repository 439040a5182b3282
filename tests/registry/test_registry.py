"""Registry contract: instances, endpoints, static and DNS discovery, the App's registration."""

from __future__ import annotations

import asyncio

import pytest

from framework import App
from framework.registry import (
    DnsDiscovery,
    ServiceInstance,
    StaticDiscovery,
    advertised_endpoints,
    static_instances,
)
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer


def test_instance_json_uses_kratos_field_names_and_round_trips() -> None:
    instance = ServiceInstance("i1", "orders", "v2", {"weight": "3"}, ("grpc://10.0.0.1:9000",))
    assert instance.to_json() == (
        b'{"id":"i1","name":"orders","version":"v2","metadata":{"weight":"3"},'
        b'"endpoints":["grpc://10.0.0.1:9000"]}'
    )
    assert ServiceInstance.from_json(instance.to_json()) == instance
    assert instance.endpoint("grpc") == "10.0.0.1:9000"
    assert instance.endpoint("http") is None
    with pytest.raises(ValueError):
        ServiceInstance.from_json(b"[]")


def test_advertised_endpoints_replace_wildcards_or_every_host() -> None:
    urls = ["grpc://0.0.0.0:9000", "http://127.0.0.1:8000", "http://[::]:81"]
    assert advertised_endpoints(urls, "10.1.2.3") == (
        "grpc://10.1.2.3:9000",
        "http://10.1.2.3:8000",
        "http://10.1.2.3:81",
    )
    detected = advertised_endpoints(urls)
    assert detected[1] == "http://127.0.0.1:8000"  # a concrete bind address is kept
    assert "0.0.0.0" not in detected[0] and detected[0].endswith(":9000")
    assert advertised_endpoints(["grpc://[::1]:5"], "fd00::7") == ("grpc://[fd00::7]:5",)


async def test_static_discovery_watch_sees_registrations() -> None:
    registry = StaticDiscovery({"orders": static_instances("orders", ["127.0.0.1:1"])})
    watcher = await registry.watch("orders")
    assert [i.id for i in await watcher.next()] == ["grpc://127.0.0.1:1"]
    extra = ServiceInstance("b", "orders", endpoints=("grpc://127.0.0.1:2",))
    await registry.register(extra)
    assert {i.id for i in await watcher.next()} == {"grpc://127.0.0.1:1", "b"}
    await registry.deregister(extra)
    assert [i.id for i in await watcher.next()] == ["grpc://127.0.0.1:1"]
    pending = asyncio.create_task(watcher.next())
    await asyncio.sleep(0)
    await watcher.stop()
    with pytest.raises(asyncio.CancelledError):
        await pending


async def test_dns_discovery_resolves_a_records() -> None:
    dns = DnsDiscovery({"grpc": 9000, "http": 8000}, hosts={"orders": "localhost"}, interval=0.1)
    instances = await dns.get_service("orders")
    assert instances, "localhost must resolve"
    assert all(i.name == "orders" for i in instances)
    assert any(i.endpoint("grpc") in ("127.0.0.1:9000", "[::1]:9000") for i in instances)
    assert await dns.get_service("no-such-name.invalid") == []
    watcher = await dns.watch("orders")
    assert await watcher.next() == sorted(instances, key=lambda i: i.id)
    await watcher.stop()


async def test_app_registers_when_ready_and_deregisters_first_on_stop() -> None:
    registry = StaticDiscovery()
    events: list[str] = []
    grpc_server = GrpcServer("127.0.0.1", 0)
    http_server = HttpServer("127.0.0.1", 0)

    class Recording(StaticDiscovery):
        async def register(self, instance: ServiceInstance) -> None:
            events.append(f"register serving={http_server._serving}")
            await registry.register(instance)

        async def deregister(self, instance: ServiceInstance) -> None:
            events.append(f"deregister serving={http_server._serving}")
            await registry.deregister(instance)

    app = App(
        "orders",
        version="v1",
        servers=[grpc_server, http_server],
        registrar=Recording(),
        deregister_delay=0.2,
        before_stop=[lambda: events.append("before-stop")],
        handle_signals=False,
    )
    async with app:
        [instance] = await registry.get_service("orders")
        assert instance.id == app.id and instance.version == "v1"
        ports = {grpc_server.endpoint.rsplit(":", 1)[1], http_server.endpoint.rsplit(":", 1)[1]}
        assert "0" not in ports  # port 0 resolved
        assert set(instance.endpoints) == {grpc_server.endpoint, http_server.endpoint}
        started = asyncio.get_running_loop().time()
    assert events[:3] == ["register serving=True", "deregister serving=True", "before-stop"]
    assert asyncio.get_running_loop().time() - started >= 0.2
    assert await registry.get_service("orders") == []


async def test_a_failed_registration_fails_the_start_and_stops_the_servers() -> None:
    class Broken(StaticDiscovery):
        async def register(self, instance: ServiceInstance) -> None:
            raise ConnectionError("registry down")

    from framework.app import AppStartError

    server = HttpServer("127.0.0.1", 0)
    app = App("orders", servers=[server], registrar=Broken(), handle_signals=False)
    with pytest.raises(AppStartError, match="registry down"):
        await app.start()
    port = int(server.endpoint.rsplit(":", 1)[1])
    assert port != 0
    with pytest.raises(OSError):  # the server that had started was stopped
        await asyncio.open_connection("127.0.0.1", port)
