"""Issue 8 item 15 (HTTP): a route never gets a bare dependency-injector marker.

Unwired ``Provide[...]`` markers (as a default, inside ``Depends(...)``, in ``Annotated``, in a
dependency, or held by the service object a bound-method route belongs to) stop the start with
a :class:`WiringError` naming the route; wired ones are injected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from fastapi import Depends

from framework.di import WiringError
from framework.transport.http import HttpServer, Router


class Orders:
    def names(self) -> list[str]:
        return ["o-1"]


class Container(containers.DeclarativeContainer):
    orders = providers.Singleton(Orders)


# FastAPI reads a plain Provide default as a query parameter's default: the annotation must be
# one it accepts (Any), and nothing stops a bare marker from reaching the endpoint.
@inject
async def list_orders(orders: Any = Provide["orders"]) -> dict[str, Any]:
    return {"orders": orders.names()}


@inject
async def list_orders_depends(orders: Orders = Depends(Provide["orders"])) -> dict[str, Any]:
    return {"orders": orders.names()}


# Under `from __future__ import annotations` (this module), dependency-injector cannot see
# this marker (it reads the string annotation): @inject would return the function unchanged
# (with a warning), so it is left out here.
async def list_orders_annotated(
    orders: Annotated[Any, Depends(Provide["orders"])],
) -> dict[str, Any]:
    return {"orders": orders.names()}


@inject
def current_orders(orders: Any = Provide["orders"]) -> Any:
    return orders


async def list_via_dependency(orders: Any = Depends(current_orders)) -> dict[str, Any]:
    return {"orders": orders.names()}


class OrderService:
    """A service whose constructor takes its dependency from the container."""

    @inject
    def __init__(self, orders: Orders = Provide["orders"]) -> None:
        self.orders = orders

    async def list(self) -> dict[str, Any]:
        return {"orders": self.orders.names()}


def server_for(endpoint: Any) -> HttpServer:
    router = Router()
    router.add_api_route("/v1/orders", endpoint, methods=["GET"])
    server = HttpServer(port=0)
    server.include_router(router)
    return server


ENDPOINTS = [list_orders, list_orders_depends, list_via_dependency]


@pytest.fixture
def wired() -> Iterator[None]:
    container = Container()
    container.wire(modules=[__name__])
    yield
    container.unwire()


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda fn: fn.__name__)
async def test_item15_unwired_route_fails_at_start_naming_the_route(endpoint: Any) -> None:
    server = server_for(endpoint)
    with pytest.raises(WiringError, match=r"HTTP route GET /v1/orders .*'orders'.*never wired"):
        await server.start()
    await server.stop(1)  # safe after a refused start


@pytest.mark.usefixtures("wired")
async def test_item15_annotated_marker_dependency_injector_cannot_see_fails_at_start() -> None:
    with pytest.raises(WiringError, match=r"list_orders_annotated.*'orders'.*string annotations"):
        await server_for(list_orders_annotated).start()


async def test_item15_missing_inject_fails_at_start() -> None:
    async def forgot_inject(orders: Any = Provide["orders"]) -> dict[str, Any]:
        return {}

    with pytest.raises(WiringError, match=r"forgot_inject.*not @inject-decorated"):
        await server_for(forgot_inject).start()


async def test_item15_service_built_without_wiring_fails_at_start() -> None:
    service = OrderService()  # module not wired: self.orders is the bare marker
    with pytest.raises(WiringError, match=r"OrderService\.list.*attribute 'orders'"):
        await server_for(service.list).start()


@pytest.mark.usefixtures("wired")
@pytest.mark.parametrize(
    "endpoint", [*ENDPOINTS, "service"], ids=lambda fn: getattr(fn, "__name__", fn)
)
async def test_item15_wired_routes_get_their_dependencies(endpoint: Any) -> None:
    server = server_for(OrderService().list if endpoint == "service" else endpoint)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as client:
            response = await client.get("/v1/orders")
    finally:
        await server.stop(5)
    assert response.json() == {"orders": ["o-1"]}
