"""Global metadata rides on published messages; the broker consumer sees it."""

from __future__ import annotations

from typing import Any

from framework.broker import Publisher
from framework.metadata import incoming, outgoing, server_metadata
from framework.transport.context import Transport, transport_scope


class _Broker:
    def __init__(self) -> None:
        self.headers: list[Any] = []

    async def publish(self, topic: str, body: bytes, **kwargs: Any) -> None:
        self.headers.append(kwargs.get("headers"))


async def test_publish_carries_incoming_global_metadata() -> None:
    broker = _Broker()
    publisher = Publisher(broker)  # type: ignore[arg-type]

    async def handler(_: Any) -> None:
        assert incoming() == {"x-md-global-user": "u1", "x-md-local-hop": "1"}
        await publisher.publish("t", {"a": 1}, headers={"own": "yes"})

    run = server_metadata()(handler)
    headers = {"X-Md-Global-User": "u1", "x-md-local-hop": "1", "other": "no"}
    with transport_scope(Transport("http", "POST /x", headers)):
        await run(None)
    assert broker.headers == [{"x-md-global-user": "u1", "own": "yes"}]
    with outgoing({"x-md-global-trace-tag": "z"}):
        await publisher.publish("t", {"a": 1})
    assert broker.headers[-1] == {"x-md-global-trace-tag": "z"}
    await publisher.publish("t", {"a": 1})
    assert broker.headers[-1] is None
