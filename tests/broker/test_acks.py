"""Acknowledgement levels and partition= on the memory broker, and the shared pieces:
``with_acks`` handles, ``Publisher(acks=)``, the fire-and-forget failure report."""

from __future__ import annotations

import logging

import pytest

from framework.broker import MemoryBroker, Publisher
from framework.broker.acks import PublishMode, UnconfirmedFailures, publish_mode


async def test_a_publisher_at_another_level_shares_the_broker() -> None:
    broker = MemoryBroker(partitions=2)
    await broker.connect()
    seen: list[str] = []
    original = broker.publish

    async def spy(topic: str, body: bytes, **kwargs: object) -> object:
        seen.append(publish_mode(broker.default_acks).acks)
        return await original(topic, body, **kwargs)  # type: ignore[arg-type]

    broker.publish = spy  # type: ignore[method-assign]
    try:
        quick = Publisher(broker, acks="none")
        assert quick.broker is not broker and quick.broker.kind == "memory"
        assert Publisher(broker).broker is broker
        await quick.publish("t", b"a")
        await Publisher(broker).publish("t", b"b")  # the level does not leak
        await Publisher(broker, acks="leader").publish("t", b"c")
        assert seen == ["none", "all", "leader"]
        await quick.broker.close()  # a handle's close leaves the broker connected
        assert (await Publisher(broker).publish("t", b"d")).offset is not None
    finally:
        await broker.close()


async def test_on_error_alone_keeps_the_brokers_level() -> None:
    broker = MemoryBroker()
    publisher = Publisher(broker, on_error=lambda topic, error: None)
    assert publisher.broker.default_acks == broker.default_acks == "all"


async def test_memory_partition_is_honoured_and_checked() -> None:
    broker = MemoryBroker(partitions=3)
    await broker.connect()
    try:
        assert (await broker.publish("t", b"x", key=b"k", partition=2)).partition == 2
        for wrong in (3, -1, True):
            with pytest.raises(ValueError, match=r"topic 't' has partitions 0..2"):
                await broker.publish("t", b"x", partition=wrong)
    finally:
        await broker.close()


def test_a_failure_is_counted_logged_and_passed_on(caplog: pytest.LogCaptureFixture) -> None:
    failures = UnconfirmedFailures("kafka")
    got: list[tuple[str, BaseException]] = []

    def broken(topic: str, error: BaseException) -> None:
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.ERROR, logger="pykratos.broker"):
        failures.report(
            "orders", OSError("gone"), PublishMode("none", lambda t, e: got.append((t, e)))
        )
        failures.report("orders", OSError("again"), PublishMode("none", broken))
        failures.report("orders", OSError("no callback"))
    assert failures.count == 3
    assert [t for t, _ in got] == ["orders"]
    assert "3 failure(s) so far" in caplog.text and "on_error callback raised" in caplog.text


async def test_a_handles_batching_publisher_publishes_at_its_level_and_closes_with_the_broker() -> (
    None
):
    broker = MemoryBroker(partitions=2)
    await broker.connect()
    seen: list[str] = []
    original = broker.publish

    async def spy(topic: str, body: bytes, **kwargs: object) -> object:
        seen.append(publish_mode(broker.default_acks).acks)
        return await original(topic, body, **kwargs)  # type: ignore[arg-type]

    broker.publish = spy  # type: ignore[method-assign]
    try:
        quick = Publisher(broker, acks="none").batch(chunk_size=2, flush_interval=3600)
        same = Publisher(broker, acks="all").batch(chunk_size=2, flush_interval=3600)
        pending = [await quick.submit("t", "fast"), await same.submit("t", "confirmed")]
    finally:
        await broker.close()  # flushes both: the broker tracks its handles' publishers
    assert all(future.done() and future.exception() is None for future in pending)
    assert quick.inner.closed and same.inner.closed
    assert sorted(seen) == ["all", "none"]
