"""The memory broker on stop and when its own pipeline fails (issue 8, items 1 and 6).

Item 1: the memory log dies with the process, so a graceful stop must finish what was
published before it, queued or not fetched yet, within the stop timeout.
Item 6: an exception outside the handler (the processor, the dead-letter publish) must not
leave a message pending forever: it is dead-lettered, like on Kafka and RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from framework.broker import (
    DLQ_ERROR_TYPE,
    DLQ_REASON,
    BatchPolicy,
    BrokerServer,
    MemoryBroker,
    Message,
    Outcome,
    ProcessResult,
    PublishResult,
    RetryPolicy,
    Router,
    SubscriberSpec,
)
from framework.broker import memory as memory_module
from tests.broker.helpers import Collector


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker(partitions=2)
    await broker.connect()
    yield broker
    await broker.close()


async def serve(broker: MemoryBroker, *routers: Router) -> BrokerServer:
    server = BrokerServer(broker, list(routers))
    await server.start()
    return server


def committed_everything(broker: MemoryBroker, topic: str, group: str) -> bool:
    ends = {p.index: p.end for p in broker._topics[topic].partitions}
    return broker.committed(topic, group) == ends


# -- item 1: a graceful stop drains ----------------------------------------------------------


async def test_item1_stop_finishes_queued_and_not_yet_fetched_messages(
    broker: MemoryBroker,
) -> None:
    # 1,200 messages on 2 partitions and 2 workers: each worker queue holds at most 256, so at
    # stop most messages are queued or not even fetched. Before the fix the queued ones were
    # dropped (and those not fetched were never reached): lost with the process.
    router = Router()
    started = asyncio.Event()
    handled: list[int] = []

    @router.subscriber("jobs", group="g", concurrency=2)
    async def handle(event: dict[str, int]) -> None:
        started.set()
        await asyncio.sleep(0)  # a handler that yields, like any real one
        handled.append(event["n"])

    for n in range(1200):
        await broker.publish("jobs", b'{"n": %d}' % n, key=b"%d" % (n % 10))
    server = await serve(broker, router)
    await asyncio.wait_for(started.wait(), 5)
    assert len(handled) < 1200  # the stop really begins with a backlog
    await server.stop(30)
    assert sorted(handled) == list(range(1200))
    assert committed_everything(broker, "jobs", "g")


async def test_item1_stop_drains_what_handlers_publish_to_other_subscribers(
    broker: MemoryBroker,
) -> None:
    # payment -> order-paid: the second hop is published while the stop already runs.
    router = Router()
    paid: list[int] = []

    @router.subscriber("payment", group="orders", concurrency=4)
    async def on_payment(event: dict[str, int]) -> None:
        await asyncio.sleep(0.001)
        await broker.publish("order-paid", b'{"n": %d}' % event["n"])

    @router.subscriber("order-paid", group="notify")
    async def on_paid(event: dict[str, int]) -> None:
        await asyncio.sleep(0)
        paid.append(event["n"])

    server = await serve(broker, router)
    for n in range(300):
        await broker.publish("payment", b'{"n": %d}' % n, key=b"%d" % n)
    await server.stop(30)
    assert sorted(paid) == list(range(300))


async def test_item1_stop_timeout_logs_how_many_messages_were_not_finished(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router()
    started = asyncio.Event()

    @router.subscriber("jobs", group="g")
    async def stuck(event: dict[str, int]) -> None:
        started.set()
        await asyncio.Event().wait()

    for n in range(5):
        await broker.publish("jobs", b'{"n": %d}' % n, key=b"k")  # one partition, one worker
    server = await serve(broker, router)
    await asyncio.wait_for(started.wait(), 5)
    with caplog.at_level(logging.WARNING, "pykratos.broker.memory"):
        await asyncio.wait_for(server.stop(0.2), 5)
    (warning,) = [r for r in caplog.records if "not finished" in r.getMessage()]
    assert "5 message(s) not finished (1 cancelled in a handler)" in warning.getMessage()


# -- item 6: a failing pipeline dead-letters, never leaves a message pending -------------------


class RaisingProcessor:
    """A processor whose pipeline raises (a bug outside the handler) on ``poison`` bodies."""

    def __init__(self, spec: SubscriberSpec, handled: Collector, poison: bytes = b"") -> None:
        self.spec = spec
        self.handled = handled
        self.poison = poison

    async def process(self, message: Message, *, retry_in_process: bool = True) -> ProcessResult:
        if message.body == self.poison:
            raise RuntimeError("pipeline bug")
        self.handled.add(message.body)
        return ProcessResult(Outcome.ACK)

    async def process_batch(self, messages: Sequence[Message]) -> ProcessResult:
        raise RuntimeError("batch pipeline bug")


async def _unused(event: Any) -> None:  # the handler of the raw specs below
    pass


async def test_item6_a_processor_that_raises_dead_letters_the_message(
    broker: MemoryBroker,
) -> None:
    handled, dead = Collector(), Collector()
    spec = SubscriberSpec(topic="jobs", handler=_unused, group="g")
    subscription = await broker.subscribe(spec, RaisingProcessor(spec, handled, b"boom"))
    dlq_spec = SubscriberSpec(topic="jobs.dlq", handler=_unused, group="ops")
    dlq = await broker.subscribe(dlq_spec, RaisingProcessor(dlq_spec, dead))
    first = await broker.publish("jobs", b"boom", key=b"k")
    await broker.publish("jobs", b"fine", key=b"k")
    assert await handled.wait(1) == [b"fine"]
    assert await dead.wait(1) == [b"boom"]
    # Committed past both: the failed one is not pending forever (before the fix it was).
    assert broker.committed("jobs", "g")[first.partition] == 2  # type: ignore[index]
    await subscription.stop(5)
    await dlq.stop(5)


async def test_item6_a_batch_processor_that_raises_dead_letters_the_batch(
    broker: MemoryBroker,
) -> None:
    dead = Collector()
    batch = BatchPolicy(max_size=3, max_wait=0.05)
    spec = SubscriberSpec(topic="jobs", handler=_unused, group="g", batch=batch)
    subscription = await broker.subscribe(spec, RaisingProcessor(spec, Collector()))
    dlq_spec = SubscriberSpec(topic="jobs.dlq", handler=_unused, group="ops")
    dlq = await broker.subscribe(dlq_spec, RaisingProcessor(dlq_spec, dead))
    for body in (b"a", b"b", b"c"):
        await broker.publish("jobs", body, key=b"k")
    assert sorted(await dead.wait(3)) == [b"a", b"b", b"c"]
    await subscription.stop(5)
    await dlq.stop(5)
    assert committed_everything(broker, "jobs", "g")


async def test_item6_a_failing_dead_letter_publish_is_retried_until_it_succeeds(
    broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory_module, "_DLQ_RETRY_BACKOFF", 0.01)
    failures = 2
    publish = broker.publish

    async def flaky_publish(
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
    ) -> PublishResult:
        nonlocal failures
        if topic.endswith(".dlq") and failures:
            failures -= 1
            raise ConnectionError("dead-letter destination unavailable")
        return await publish(topic, body, key=key, headers=headers, delay=delay)

    monkeypatch.setattr(broker, "publish", flaky_publish)
    router = Router()
    dead = Collector()

    @router.subscriber("jobs", group="g", retry=RetryPolicy(max_attempts=1))
    async def failing(event: dict[str, int]) -> None:
        raise ValueError("handler failed")

    @router.subscriber("jobs.dlq", group="ops")
    async def on_dead(message: Message) -> None:
        dead.add(message)

    server = await serve(broker, router)
    published = await broker.publish("jobs", b'{"n": 1}')
    (letter,) = await dead.wait(1)
    assert failures == 0
    assert letter.headers[DLQ_REASON] == "ValueError: handler failed"
    assert letter.headers[DLQ_ERROR_TYPE] == "ValueError"
    assert broker.committed("jobs", "g")[published.partition] == 1  # type: ignore[index]
    await server.stop(5)
