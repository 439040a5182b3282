"""The test broker on its own: a Kafka broker from config redirected to memory semantics,
recordings, waits, failures raised at exit, batch payloads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from framework import App
from framework.broker import BrokerServer, Router, create_broker
from framework.testing import HandlerFailed, TestApp

router = Router()
seen: list[str] = []


@router.subscriber("words", group="g", concurrency=2, retry=1)
async def on_word(word: str) -> None:
    if word == "boom":
        raise ValueError("boom is not a word")
    seen.append(word)


@router.subscriber("sizes", batch=3, retry=1)
async def on_sizes(sizes: list[int]) -> None: ...


def _app() -> App:
    # A Kafka broker nobody listens for (port 1): only the test broker makes this start.
    kafka = create_broker("kafka", bootstrap_servers="127.0.0.1:1")
    return App("words", servers=[BrokerServer(kafka, [router], name="events")])


async def test_kafka_from_config_runs_on_the_test_broker() -> None:
    app = _app()
    broker = app.servers[0].broker  # type: ignore[attr-defined]
    async with TestApp(app) as kit:
        for word in ("a", "b", "c"):
            await kit.publish("words", word, key=word, headers={"h": word})
        received = await kit.broker.handled(on_word, 3)
        assert sorted(r.payload for r in received) == ["a", "b", "c"]
        assert [p.headers["h"] for p in kit.broker.published_to("words")] == ["a", "b", "c"]
        assert "publish" in vars(broker)
    assert "publish" not in vars(broker)  # the Kafka broker's own methods are back


async def test_a_failure_not_awaited_is_raised_at_exit() -> None:
    with pytest.raises(HandlerFailed, match="boom is not a word") as raised:
        async with TestApp(_app()) as kit:
            await kit.publish("words", "boom")
            # no wait: the App's stop drains the broker, the failure surfaces after it
    assert isinstance(raised.value.__cause__, ValueError)


async def test_waiting_times_out_naming_the_count() -> None:
    async with TestApp(_app()) as kit:
        await kit.publish("words", "x")
        with pytest.raises(TimeoutError, match="handled 1 of 2"):
            await kit.broker.handled(on_word, 2, timeout=0.5)


async def test_batch_payloads_are_recorded_per_message() -> None:
    async with TestApp(_app()) as kit:
        for size in (1, 2, 3):
            await kit.publish("sizes", size, key="same")
        received = await kit.broker.handled(on_sizes, 3)
        assert sorted(r.payload for r in received) == [1, 2, 3]


async def test_taken_failures_do_not_fail_the_test() -> None:
    async with TestApp(_app()) as kit:
        await kit.publish("words", "boom")
        with pytest.raises(HandlerFailed):
            await kit.broker.handled("words")
        assert kit.broker.failures == []


async def test_delayed_and_scheduled_publishes_run_later_on_the_test_broker() -> None:
    async with TestApp(_app()) as kit:
        loop = asyncio.get_running_loop()
        started = loop.time()
        soon = datetime.now(UTC) + timedelta(seconds=0.2)
        await kit.publish("words", "later", deliver_at=soon)
        await kit.publish("words", "after", delay=0.1)
        with pytest.raises(ValueError, match="timezone-aware"):
            await kit.publish("words", "x", deliver_at=soon.replace(tzinfo=None))
        received = await kit.broker.handled(on_word, 2)
        assert [r.payload for r in received] == ["after", "later"]
        assert loop.time() - started >= 0.19


async def test_a_kafka_batching_publisher_runs_and_records_on_the_test_broker() -> None:
    app = _app()
    broker = app.servers[0].broker  # type: ignore[attr-defined]
    async with TestApp(app) as kit:
        # Kafka's own batching publisher would need the producer this test never connects.
        async with broker.batch_publisher(chunk_size=2) as batch:
            futures = [await batch.submit("words", w, key=w) for w in (b"d", b"e")]
        assert [f.result().topic for f in futures] == ["words", "words"]
        received = await kit.broker.handled(on_word, 2)
        assert sorted(r.payload for r in received) == ["d", "e"]
        assert [p.key for p in kit.broker.published_to("words")] == [b"d", b"e"]
    assert "batch_publisher" not in vars(broker)
