"""At-least-once on a private Mosquitto (no queue limit): acks after handling, crashes,
graceful stop, reconnection, last will, more than Mosquitto's stock 1,000 queued messages."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from framework.broker import Message, Router
from framework.transport.mqtt import MqttBroker
from framework.transport.mqtt.mosquitto import MosquittoProcess

from .conftest import Inbox, collecting_router, started

pytestmark = pytest.mark.mqtt
ROOT = Path(__file__).resolve().parents[2]


class Child:
    """A ``tests.mqtt.crashing_consumer`` subprocess, read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.mqtt.crashing_consumer", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    async def line(self, timeout: float = 20.0) -> str:
        assert self.process.stdout is not None
        text = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        assert text, f"the child exited with {self.process.poll()}"
        return text.strip()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started_children: list[Child] = []
    yield started_children
    for child in started_children:
        child.kill()


async def test_a_message_is_acknowledged_only_after_its_handler_finished(
    mosquitto: MosquittoProcess, unique: Callable[[str], str], children: list[Child]
) -> None:
    """The consumer is SIGKILLed while its handler runs: the PUBACK was never sent, so the
    server resends the message to the restarted instance (same client id)."""
    topic, client_id = unique("crash"), f"svc-{uuid.uuid4().hex[:8]}"
    child = Child(mosquitto.url, client_id, topic, "workers")
    children.append(child)
    assert await child.line() == "ready"
    publisher = MqttBroker(mosquitto.url)
    await publisher.connect()
    try:
        await publisher.publish(topic, b"m1")
        assert await child.line() == "got m1"
        # No event marks an acknowledgement that must not exist: give a premature PUBACK
        # (sent on receipt rather than after the handler) time to leave before the kill.
        await asyncio.sleep(0.5)
        child.kill()

        inbox = Inbox()
        server = await started(
            MqttBroker(mosquitto.url, client_id=client_id),
            collecting_router(topic, inbox, group="workers", name="crash-consumer"),
        )
        try:
            [again] = await inbox.wait_for(1)
            assert again.body == b"m1"
            assert again.raw.dup  # the server's resend of an unacknowledged PUBLISH
        finally:
            await server.stop(5)
    finally:
        await publisher.close()


async def test_finished_messages_are_not_redelivered_to_the_same_session(
    mosquitto: MosquittoProcess, unique: Callable[[str], str]
) -> None:
    """The counterpart: after a clean stop, a restart with the same client id gets nothing
    again (the PUBACKs went out)."""
    topic, client_id = unique("acked"), f"svc-{uuid.uuid4().hex[:8]}"
    publisher = MqttBroker(mosquitto.url)
    await publisher.connect()
    try:
        inbox = Inbox()
        server = await started(
            MqttBroker(mosquitto.url, client_id=client_id),
            collecting_router(topic, inbox, group="workers", concurrency=4),
        )
        for n in range(50):
            await publisher.publish(topic, str(n).encode(), key=str(n % 5).encode())
        await inbox.wait_for(50)
        await server.stop(5)

        later = Inbox()
        server = await started(
            MqttBroker(mosquitto.url, client_id=client_id),
            collecting_router(topic, later, group="workers"),
        )
        await publisher.publish(topic, b"fresh")
        [only] = await later.wait_for(1)
        assert only.body == b"fresh"
        await asyncio.sleep(0.3)
        assert [m.body for m in later.messages] == [b"fresh"]
        await server.stop(5)
    finally:
        await publisher.close()


async def test_graceful_stop_unsubscribes_then_finishes_messages_in_flight(
    mosquitto: MosquittoProcess, unique: Callable[[str], str]
) -> None:
    topic = unique("drain")
    started_handling = asyncio.Event()
    release = asyncio.Event()
    finished: list[bytes] = []
    router = Router()

    @router.subscriber(topic, group="g")
    async def slow(message: Message) -> None:
        started_handling.set()
        await release.wait()
        finished.append(message.body)

    publisher = MqttBroker(mosquitto.url)
    await publisher.connect()
    client_id = f"svc-{uuid.uuid4().hex[:8]}"
    server = await started(MqttBroker(mosquitto.url, client_id=client_id), router)
    try:
        await publisher.publish(topic, b"in-flight")
        await asyncio.wait_for(started_handling.wait(), 10)
        await server.stop_intake()
        await publisher.publish(topic, b"after-intake-stopped")  # nobody subscribed now
        stopping = asyncio.create_task(server.stop(10))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waits for the handler
        release.set()
        await asyncio.wait_for(stopping, 10)
        assert finished == [b"in-flight"]

        # Acknowledged before the DISCONNECT: the same session gets nothing back.
        again = Inbox()
        server = await started(
            MqttBroker(mosquitto.url, client_id=client_id),
            collecting_router(topic, again, group="g"),
        )
        await publisher.publish(topic, b"next")
        [message] = await again.wait_for(1)
        assert message.body == b"next"
    finally:
        await server.stop(5)
        await publisher.close()


async def test_more_than_the_stock_queue_limit_arrives_at_least_once(
    mosquitto: MosquittoProcess, unique: Callable[[str], str]
) -> None:
    """3,000 messages published faster than they are handled: with the stock
    ``max_queued_messages`` Mosquitto would drop all but about 1,000."""
    topic = unique("many")
    seen: set[int] = set()
    done = asyncio.Event()
    router = Router()

    @router.subscriber(topic, group="g")
    async def slow_enough(message: Message) -> None:
        seen.add(int(message.body))
        if len(seen) == 3000:
            done.set()

    server = await started(MqttBroker(mosquitto.url, receive_maximum=10), router)
    publisher = MqttBroker(mosquitto.url)
    await publisher.connect()
    try:
        await asyncio.gather(*(publisher.publish(topic, str(n).encode()) for n in range(3000)))
        await asyncio.wait_for(done.wait(), 60)
        assert seen == set(range(3000))
    finally:
        await publisher.close()
        await server.stop(5)


async def test_reconnects_and_subscribes_again_after_the_server_restarts(
    mosquitto: MosquittoProcess, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique("restart")
    inbox = Inbox()
    caplog.set_level(logging.WARNING, logger="pykratos.mqtt")
    server = await started(
        MqttBroker(mosquitto.url, reconnect_interval=0.2),
        collecting_router(topic, inbox, group="g"),
    )
    publisher = MqttBroker(mosquitto.url, reconnect_interval=0.2)
    await publisher.connect()
    try:
        await publisher.publish(topic, b"before")
        await inbox.wait_for(1)
        mosquitto.stop()  # no persistence: the sessions and subscriptions are gone
        await asyncio.sleep(1.0)  # several failed reconnection attempts
        mosquitto.start()
        # Publishing waits for the publisher's reconnection; the subscription must have
        # subscribed again to get it.
        [subscription] = server.broker.subscriptions  # type: ignore[attr-defined]
        await asyncio.wait_for(subscription.connection.connected.wait(), 20)
        await publisher.publish(topic, b"after")
        messages = await inbox.wait_for(2)
        assert [m.body for m in messages] == [b"before", b"after"]
        subscriber_logs = [
            r.getMessage() for r in caplog.records if "mqtt subscriber" in r.getMessage()
        ]
        assert len(subscriber_logs) == 2, subscriber_logs  # one per state change
        assert "lost the connection" in subscriber_logs[0]
        assert "reconnected" in subscriber_logs[1]
    finally:
        await publisher.close()
        await server.stop(5)


async def test_last_will_is_published_when_the_instance_dies(
    mosquitto: MosquittoProcess, unique: Callable[[str], str], children: list[Child]
) -> None:
    topic = unique("will")
    inbox = Inbox()
    server = await started(
        MqttBroker(mosquitto.url), collecting_router(topic, inbox, broadcast=True)
    )
    try:
        child = Child("--will", mosquitto.url, f"svc-{uuid.uuid4().hex[:8]}", topic)
        children.append(child)
        assert await child.line() == "ready"
        await asyncio.sleep(0.2)
        assert inbox.messages == []  # alive: no will
        child.kill()
        [will] = await inbox.wait_for(1)
        assert will.body == b"gone"
    finally:
        await server.stop(5)


async def test_publish_waits_for_the_acknowledgement_across_a_restart_then_times_out(
    mosquitto: MosquittoProcess, unique: Callable[[str], str]
) -> None:
    from framework.transport.mqtt import PublishFailedError

    topic = unique("confirm")
    publisher = MqttBroker(mosquitto.url, reconnect_interval=0.1, publish_timeout=20)
    await publisher.connect()
    try:
        mosquitto.stop()
        pending = asyncio.create_task(publisher.publish(topic, b"held"))
        await asyncio.sleep(0.5)
        assert not pending.done()  # no PUBACK without a server: still waiting
        mosquitto.start()
        await asyncio.wait_for(pending, 20)  # sent again once reconnected, then acked
        hurried = MqttBroker(mosquitto.url, publish_timeout=0.3, reconnect_interval=0.1)
        await hurried.connect()
        mosquitto.stop()
        with pytest.raises(PublishFailedError, match="not acknowledged"):
            await hurried.publish(topic, b"never")
        await hurried.close()
    finally:
        await publisher.close()


async def test_an_unreachable_server_fails_connect_with_a_clear_error(
    mosquitto: MosquittoProcess,
) -> None:
    from framework.transport.mqtt import MqttUnavailableError

    mosquitto.stop()
    broker = MqttBroker(mosquitto.url, connect_timeout=1)
    with pytest.raises(MqttUnavailableError, match=f"cannot connect to MQTT at {mosquitto.url}"):
        await broker.connect()
    await broker.close()
