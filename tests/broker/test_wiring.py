"""dependency-injector handlers: wired ones get their dependencies, unwired ones fail at start."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject

from framework.broker import BrokerServer, MemoryBroker, Publisher, Router, WiringError
from tests.broker.helpers import Collector


class OrderUseCase:
    def __init__(self) -> None:
        self.paid: list[int] = []

    async def mark_paid(self, order_id: int) -> None:
        self.paid.append(order_id)


class Container(containers.DeclarativeContainer):
    orders = providers.Singleton(OrderUseCase)


ORDERS = Provide[Container.orders]


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker()
    yield broker
    await broker.close()


@pytest.fixture
def container() -> AsyncIterator[Container]:
    container = Container()
    yield container
    container.unwire()


async def test_injected_and_wired_handler_gets_its_dependency(
    broker: MemoryBroker, container: Container
) -> None:
    router = Router()
    done = Collector()

    @router.subscriber("payments", group="orders")
    @inject
    async def on_paid(event: dict[str, int], orders: OrderUseCase = ORDERS) -> None:
        await orders.mark_paid(event["order_id"])
        done.add(event["order_id"])

    container.wire(modules=[sys.modules[__name__]])
    server = BrokerServer(broker, [router])
    await server.start()
    await Publisher(broker).publish("payments", {"order_id": 12})
    await done.wait(1)
    await server.stop(5)
    assert container.orders().paid == [12]


async def test_injected_but_unwired_handler_fails_at_start_naming_it(broker: MemoryBroker) -> None:
    router = Router()

    @router.subscriber("payments", group="orders")
    @inject
    async def on_paid(event: dict[str, int], orders: OrderUseCase = ORDERS) -> None:
        raise AssertionError("must never run")

    server = BrokerServer(broker, [router])
    with pytest.raises(WiringError) as info:
        await server.start()
    message = str(info.value)
    assert "on_paid" in message
    assert "parameter 'orders'" in message
    assert "was never wired" in message
    await server.stop(1)


async def test_handler_without_inject_fails_at_start_naming_it(
    broker: MemoryBroker, container: Container
) -> None:
    router = Router()

    @router.subscriber("payments", group="orders")
    async def on_refund(event: dict[str, int], orders: OrderUseCase = ORDERS) -> None:
        raise AssertionError("must never run")

    container.wire(modules=[sys.modules[__name__]])
    server = BrokerServer(broker, [router])
    with pytest.raises(WiringError, match=r"on_refund: parameter 'orders'.*@inject"):
        await server.start()
    await server.stop(1)


async def test_inject_above_the_subscriber_decorator_is_caught(
    broker: MemoryBroker, container: Container
) -> None:
    router = Router()

    # Wrong order: the router registers the raw function, @inject wraps it afterwards.
    @inject
    @router.subscriber("payments", group="orders")
    async def on_cancel(event: dict[str, int], orders: OrderUseCase = ORDERS) -> None:
        raise AssertionError("must never run")

    container.wire(modules=[sys.modules[__name__]])
    with pytest.raises(WiringError, match="on_cancel"):
        await BrokerServer(broker, [router]).start()
