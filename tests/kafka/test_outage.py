"""Issue 8 items 5, 19, 25 and 26 on Kafka: a dead worker, an outage at runtime, start
errors, client logs.

Each test that kills the broker runs its own Tansu on a free port (the session one is shared).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import httpx
import pytest

from framework.broker import BROKER_UNAVAILABLE, BrokerServer, Publisher
from framework.broker import Router as BrokerRouter
from framework.errors import from_exception
from framework.transport.http import HttpServer, Router
from framework.transport.kafka import (
    KafkaBroker,
    KafkaPublishTimeoutError,
    KafkaUnavailableError,
)
from framework.transport.kafka.tansu import FAST_JOIN, TansuProcess, TansuUnavailable, free_port
from tests.broker.helpers import Collector
from tests.kafka.conftest import create_topic
from tests.services import unavailable

pytestmark = pytest.mark.kafka

PUBLISH_TIMEOUT = 2.0


def _own_tansu(port: int | None = None) -> TansuProcess:
    try:
        return TansuProcess(port=port).start()
    except TansuUnavailable as exc:
        unavailable(f"Tansu (Kafka-protocol broker): {exc}")
        raise  # unreachable: unavailable() skips or fails


def _client_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("aiokafka")]


def _state_lines(caplog: pytest.LogCaptureFixture, state: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pykratos.broker" and getattr(r, "state", None) == state
    ]


async def test_outage_publish_fails_fast_with_503_then_recovers_with_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tansu = _own_tansu()
    port = tansu.port
    broker = KafkaBroker(tansu.bootstrap_servers, publish_timeout=PUBLISH_TIMEOUT, **FAST_JOIN)
    publisher = Publisher(broker)
    http = HttpServer("127.0.0.1", 0)
    router = Router()

    @router.post("/pay", status_code=202)
    async def pay() -> dict[str, str]:
        await publisher.publish("payments", {"order": "1"}, key="1")
        return {"status": "PAYMENT_PENDING"}

    http.include_router(router)
    restarted: TansuProcess | None = None
    try:
        await broker.connect()
        await broker.publish("payments", b"before")
        await http.start()
        caplog.set_level(logging.INFO)
        tansu.stop()  # the broker dies under a running service
        async with httpx.AsyncClient(base_url=http.endpoint, timeout=30) as client:
            started = time.monotonic()
            reply = await client.post("/pay")
            elapsed = time.monotonic() - started
        # Before the fix: 30 s (the request timeout), then 504.
        assert reply.status_code == 503, reply.text
        assert reply.json()["reason"] == BROKER_UNAVAILABLE
        assert elapsed < PUBLISH_TIMEOUT + 2.0, elapsed
        started = time.monotonic()
        with pytest.raises(KafkaPublishTimeoutError) as caught:
            await broker.publish("payments", b"during")
        assert time.monotonic() - started < PUBLISH_TIMEOUT + 2.0
        assert from_exception(caught.value).grpc_status == "UNAVAILABLE"
        # Two publish timeouts of outage: aiokafka alone wrote ~100 lines per second.
        assert len(_client_lines(caplog)) <= 3, [r.getMessage() for r in _client_lines(caplog)]
        assert len(_state_lines(caplog, "unavailable")) == 1

        restarted = _own_tansu(port)
        result = await broker.publish("payments", b"after")
        assert result.offset is not None
        recovered = _state_lines(caplog, "recovered")
        assert len(recovered) == 1, recovered
        assert "suppressed" in recovered[0]
    finally:
        await http.stop(1)
        await broker.close()
        tansu.stop()
        if restarted is not None:
            restarted.stop()


async def test_start_error_names_the_servers_and_how_long_was_tried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    servers = f"127.0.0.1:{free_port()}"
    broker = KafkaBroker(servers, connect_timeout=5, **FAST_JOIN)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KafkaUnavailableError) as caught:
        await broker.connect()
    message = str(caught.value)
    assert servers in message and "tried for" in message, message
    assert "refused" in message.lower() or "connect" in message.lower(), message
    # aiokafka's own ERROR lines about the attempt are folded into that one error.
    assert not [r for r in _client_lines(caplog) if r.levelno >= logging.WARNING]


async def test_client_library_info_lines_are_quiet_by_default(
    bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("aiokafka", "aio_pika", "aiormq"):
        logging.getLogger(name).setLevel(logging.NOTSET)  # as in a fresh process
    caplog.set_level(logging.INFO)
    broker = KafkaBroker(bootstrap, **FAST_JOIN)
    await broker.connect()
    try:
        await broker.publish("quiet", b"x")
    finally:
        await broker.close()
    assert not [r for r in _client_lines(caplog) if r.levelno < logging.WARNING]
    assert logging.getLogger("aiokafka").level == logging.WARNING


async def test_a_worker_that_dies_is_logged_and_restarted(
    bootstrap: str, broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, 1)
    crashed = asyncio.Event()
    handled = Collector()
    router = BrokerRouter()

    @router.subscriber(topic, group=f"g-{topic}")
    async def handle(body: bytes) -> None:
        if body == b"crash":
            crashed.set()
            # Escapes every `except Exception` of the pipeline and ends the worker task.
            raise asyncio.CancelledError("not a cancellation we asked for")
        handled.add(body)

    server = BrokerServer(KafkaBroker(bootstrap, client_id="crash", **FAST_JOIN), [router])
    await server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pykratos.kafka"):
            await broker.publish(topic, b"crash")
            async with asyncio.timeout(10):
                await crashed.wait()
            await broker.publish(topic, b"next")
            await handled.wait(1)  # before the fix: the only worker is gone for good
        assert any(
            "worker 0 task stopped unexpectedly" in r.getMessage() for r in caplog.records
        ), caplog.text
    finally:
        await server.stop(2)
