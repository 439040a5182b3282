from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from framework import App
from framework.broker import (
    BROKER_KINDS,
    BrokerServer,
    MemoryBroker,
    Publisher,
    Router,
    UnsupportedOptionError,
    create_broker,
    factory,
)
from framework.transport import Server
from tests.broker.helpers import Collector


async def test_broker_server_inside_an_app_consumes_and_stops_gracefully() -> None:
    broker = MemoryBroker(name="svc")
    router = Router()
    got = Collector()
    release = asyncio.Event()
    finished: list[int] = []

    @router.subscriber("orders", group="svc")
    async def on_order(event: dict[str, int]) -> None:
        got.add(event["id"])
        await release.wait()
        finished.append(event["id"])

    server = BrokerServer(broker, [router], name="events")
    assert isinstance(server, Server)
    app = App("svc", servers=[server], handle_signals=False, stop_timeout=5)
    async with app:
        assert app.info.endpoints == ("memory://svc",)
        await Publisher(broker).publish("orders", {"id": 1})
        await got.wait(1)
        asyncio.get_running_loop().call_later(0.05, release.set)
    # Leaving the block stopped the App, which drained the in-flight handler first.
    assert finished == [1]
    with pytest.raises(RuntimeError, match="not connected"):
        await broker.publish("orders", b"{}")


async def test_unsupported_option_fails_before_anything_is_subscribed() -> None:
    broker = MemoryBroker()
    router = Router()

    @router.subscriber("a", group="g")
    async def fine(event: Any) -> None:
        pass

    @router.subscriber("b", group="g", exchange="topic-x")
    async def rabbit_only(event: Any) -> None:
        pass

    server = BrokerServer(broker, [router])
    with pytest.raises(UnsupportedOptionError, match=r"rabbit_only on 'b'.*exchange"):
        await server.start()
    assert broker.committed("a", "g") == {}  # nothing subscribed
    await server.stop(1)


async def test_stop_is_safe_before_start() -> None:
    server = BrokerServer(MemoryBroker(), [])
    await server.stop(1)
    assert server.endpoint == "memory://default"


def test_create_broker() -> None:
    broker = create_broker("memory", partitions=2, name="x")
    assert isinstance(broker, MemoryBroker)
    assert broker.partitions == 2
    with pytest.raises(ValueError, match=r"unknown broker kind 'nat'; valid kinds: memory, kafka"):
        create_broker("nat")
    with pytest.raises(TypeError, match=r"create_broker\('memory'\)"):
        create_broker("memory", bootstrap_servers="x")
    assert set(BROKER_KINDS) == {"memory", "kafka", "rabbitmq", "nats", "redis", "mqtt"}


def test_create_broker_names_the_extra_when_the_client_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A stand-in transport module whose client library is not installed, so the test does
    # not depend on which extras this machine has.
    (tmp_path / "fake_transport_mod.py").write_text("import definitely_missing_client\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        factory._REGISTRY,
        "fake",
        ("fake_transport_mod", "FakeBroker", "fake", ("definitely_missing_client",)),
    )
    with pytest.raises(ImportError, match=r"needs definitely_missing_client.*pykratos\[fake\]"):
        create_broker("fake")
