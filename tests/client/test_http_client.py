"""The discovery HTTP client: balancing, error mapping, metadata, timeout header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import Request

from framework import errors
from framework.client import default_client_middlewares, http_client
from framework.client.deadline import TIMEOUT_HEADER
from framework.metadata import incoming, outgoing, server_metadata
from framework.middleware import recovery
from framework.registry import ServiceInstance, StaticDiscovery
from framework.transport.http import HttpServer, Router


def _server(name: str) -> HttpServer:
    router = Router()

    @router.get("/who")
    async def who(request: Request) -> dict[str, Any]:
        return {
            "server": name,
            "md": dict(incoming()),
            "timeout": request.headers.get(TIMEOUT_HEADER),
        }

    @router.get("/missing")
    async def missing() -> None:
        raise errors.NotFound("THING_NOT_FOUND", "no thing", id=3)

    server = HttpServer("127.0.0.1", 0, middlewares=[recovery(), server_metadata()])
    server.include_router(router)
    return server


@pytest.fixture
async def registry() -> AsyncIterator[StaticDiscovery]:
    registry = StaticDiscovery()
    servers = [_server("a"), _server("b")]
    for n, server in enumerate(servers):
        await server.start()
        await registry.register(ServiceInstance(f"i{n}", "things", endpoints=(server.endpoint,)))
    yield registry
    for server in servers:
        await server.stop(1)


async def test_requests_balance_and_errors_map_back(registry: StaticDiscovery) -> None:
    async with await http_client(
        "discovery:///things", discovery=registry, middlewares=default_client_middlewares(5.0)
    ) as client:
        seen = set()
        for _ in range(20):
            reply = (await client.get("/who")).json()
            seen.add(reply["server"])
            assert 0 < float(reply["timeout"]) <= 5.0
        assert seen == {"a", "b"}
        with pytest.raises(errors.Error) as caught:
            await client.get("/missing")
        assert (caught.value.code, caught.value.reason) == (404, "THING_NOT_FOUND")
        assert caught.value.metadata == {"id": "3"}
        with outgoing({"x-md-global-tenant": "t1"}):
            reply = (await client.get("/who")).json()
        assert reply["md"] == {"x-md-global-tenant": "t1"}


async def test_an_unreachable_instance_is_503_and_retried(registry: StaticDiscovery) -> None:
    from tests.services import free_port

    await registry.register(
        ServiceInstance("dead", "things", endpoints=(f"http://127.0.0.1:{free_port()}",))
    )
    async with await http_client(
        "discovery:///things", discovery=registry, middlewares=default_client_middlewares(5.0)
    ) as client:
        for _ in range(30):
            assert (await client.get("/who")).status_code == 200
    async with await http_client("discovery:///things", discovery=registry) as client:
        failures = []
        for _ in range(30):
            try:
                await client.get("/who")
            except errors.Error as exc:
                failures.append(exc.code)
        assert failures and set(failures) == {503}
