"""A Router mounted on no broker server is reported at App start (issue 8, item 7)."""

from __future__ import annotations

import logging

import pytest

from framework import App
from framework.broker import BrokerServer, MemoryBroker, Router
from framework.broker.router import unmounted_routers


class Idle:
    endpoint = "test://idle"

    async def start(self) -> None:
        pass

    async def stop(self, timeout: float) -> None:
        pass


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "mounted on no broker server" in r.getMessage()
        and text in r.getMessage()
    ]


async def test_item7_an_unmounted_router_is_warned_about_at_app_start_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forgotten = Router()

    @forgotten.subscriber("payment-success-7", group="order-svc")
    async def on_payment_7(event: dict[str, str]) -> None:
        pass

    with caplog.at_level(logging.WARNING, "pykratos.broker"):
        async with App("svc", servers=[Idle()], handle_signals=False):
            pass
    (warning,) = warnings_about(caplog, "payment-success-7")
    assert "created in tests.broker.test_router_mounting" in warning
    assert "on_payment_7 <- 'payment-success-7'" in warning

    caplog.clear()
    with caplog.at_level(logging.WARNING, "pykratos.broker"):
        async with App("svc", servers=[Idle()], handle_signals=False):
            pass
    assert warnings_about(caplog, "payment-success-7") == []  # once per router


async def test_item7_mounted_and_included_routers_are_not_reported() -> None:
    mounted, included, parent = Router(), Router(), Router()

    @mounted.subscriber("mounted-7")
    async def a(event: dict[str, str]) -> None:
        pass

    @included.subscriber("included-7")
    async def b(event: dict[str, str]) -> None:
        pass

    @parent.subscriber("parent-7")
    async def c(event: dict[str, str]) -> None:
        pass

    mounted.include_router(included)
    BrokerServer(MemoryBroker(), [mounted])
    unmounted = unmounted_routers()
    assert parent in unmounted
    assert mounted not in unmounted and included not in unmounted


async def test_item7_an_unmounted_parent_is_reported_with_its_children_subscribers() -> None:
    parent, child = Router(), Router()

    @child.subscriber("child-7")
    async def d(event: dict[str, str]) -> None:
        pass

    parent.include_router(child)
    unmounted = unmounted_routers()
    assert parent in unmounted and child not in unmounted  # reported once, through the parent
    assert [spec.topic for spec in parent.subscribers] == ["child-7"]


async def test_item7_a_router_without_subscribers_is_not_reported() -> None:
    empty = Router()
    assert empty not in unmounted_routers()
