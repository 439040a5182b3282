"""Issue 8 item 5: a consumer stopped by anything but our stop() is noticed and recovered.

On a real RabbitMQ, in a private vhost: the broker cancels the consumer (its queue is
deleted), the broker closes the channel (a protocol error), a worker task dies, and a queue
that cannot be declared again keeps readiness off until it can.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import httpx
import pytest

from framework import App
from framework.broker import BrokerServer, Router
from framework.transport.http import HttpServer
from framework.transport.rabbitmq import RabbitBroker
from tests.rabbitmq.helpers import Collector, RabbitEnv

pytestmark = pytest.mark.rabbitmq

RABBIT_LOG = "pykratos.rabbitmq"


class Readiness:
    """A ReadinessAware server that lets a test wait for a readiness value."""

    endpoint = "test://readiness"

    def __init__(self) -> None:
        self.serving: bool | None = None
        self._changed = asyncio.Event()

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float) -> None:
        return None

    def set_serving(self, serving: bool) -> None:
        self.serving = serving
        self._changed.set()

    async def wait_for(self, serving: bool, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while self.serving is not serving:
                self._changed.clear()
                await self._changed.wait()


async def _subscribed(env: RabbitEnv, handled: Collector, **subscriber: Any) -> BrokerServer:
    router = Router()

    @router.subscriber(env.topic(), group="g", **subscriber)
    async def handle(body: bytes) -> None:
        handled.add(body)

    return await env.serve(router)


def _queue(server: BrokerServer) -> str:
    broker = server.broker
    assert isinstance(broker, RabbitBroker)
    return broker.subscriptions[0].queue


async def _redeclare_elsewhere(env: RabbitEnv, queue: str, **arguments: Any) -> None:
    """Delete ``queue`` and declare it again, bound as before, from another connection:
    what an operator's cleanup followed by another instance's start looks like."""
    connection = await aio_pika.connect(env.url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        declared = await channel.declare_queue(queue, durable=True, arguments=arguments or None)
        await declared.bind(env.exchange, routing_key=env.topic())


async def test_consumer_cancelled_by_a_deleted_queue_is_resubscribed(
    vhost_url: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = RabbitEnv(vhost_url[1])
    try:
        handled = Collector()
        server = await _subscribed(env, handled)
        publisher = await env.connected()
        with caplog.at_level(logging.WARNING, logger=RABBIT_LOG):
            await _redeclare_elsewhere(env, _queue(server))
            await publisher.publish(env.topic(), b"after")
            await handled.wait(1)  # before the fix: waits forever with 0 consumers
        warnings = [r.getMessage() for r in caplog.records if r.name == RABBIT_LOG]
        assert any("cancelled the consumer" in m for m in warnings), warnings
        assert any("consuming queue" in m and "again" in m for m in warnings), warnings
        assert server.health_problem is None
    finally:
        await env.aclose()


async def test_channel_closed_by_a_protocol_error_consumes_again(
    vhost_url: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = RabbitEnv(vhost_url[1])
    try:
        handled = Collector()
        server = await _subscribed(env, handled)
        broker = server.broker
        assert isinstance(broker, RabbitBroker)
        publisher = await env.connected()
        await publisher.publish(env.topic(), b"first")
        await handled.wait(1)
        channel = await broker.subscriptions[0]._channel.get_underlay_channel()
        with caplog.at_level(logging.WARNING, logger=RABBIT_LOG):
            # An ack for a delivery tag the channel never had: RabbitMQ closes the channel
            # with PRECONDITION_FAILED.
            await channel.basic_ack(10_000)
            await publisher.publish(env.topic(), b"second")
            await handled.wait(2)
        assert any(
            r.levelno == logging.WARNING and "closed the channel" in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]
    finally:
        await env.aclose()


async def test_a_crashed_worker_is_logged_and_restarted(
    vhost_url: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = RabbitEnv(vhost_url[1])
    try:
        handled = Collector()
        router = Router()

        @router.subscriber(env.topic(), group="g")
        async def handle(body: bytes) -> None:
            if body == b"crash":
                # Escapes every `except Exception` of the pipeline and ends the worker task.
                raise asyncio.CancelledError("not a cancellation we asked for")
            handled.add(body)

        await env.serve(router)
        publisher = await env.connected()
        with caplog.at_level(logging.WARNING, logger=RABBIT_LOG):
            await publisher.publish(env.topic(), b"crash")
            await publisher.publish(env.topic(), b"next")
            await handled.wait(1)  # before the fix: the only worker is gone
        assert handled.items == [b"next"]
        assert any(
            "stopped unexpectedly" in r.getMessage() and r.levelno == logging.WARNING
            for r in caplog.records
        )
    finally:
        await env.aclose()


async def test_readiness_is_off_while_the_queue_cannot_be_declared_again(
    vhost_url: tuple[str, str],
) -> None:
    env = RabbitEnv(vhost_url[1])
    app: App | None = None
    try:
        handled = Collector()
        router = Router()

        @router.subscriber(env.topic(), group="g")
        async def handle(body: bytes) -> None:
            handled.add(body)

        server = BrokerServer(env.broker(), [router])
        readiness = Readiness()
        http = HttpServer("127.0.0.1", 0)
        app = App("recovery", servers=[server, http, readiness], handle_signals=False)
        await app.start()
        env.remember(server)
        await readiness.wait_for(True)
        queue = _queue(server)
        async with httpx.AsyncClient(base_url=http.endpoint, timeout=10) as client:
            assert (await client.get("/readyz")).status_code == 200
            # Another instance recreates the queue with other arguments: ours cannot be
            # declared again (PRECONDITION_FAILED), so this subscriber cannot consume.
            await _redeclare_elsewhere(env, queue, **{"x-max-length": 5})
            await readiness.wait_for(False)
            assert (await client.get("/readyz")).status_code == 503
            problem = server.health_problem
            assert problem is not None and queue in problem and "x-max-length" in problem
            # The conflicting queue goes away: the subscriber declares its own and recovers.
            connection = await aio_pika.connect(env.url)
            async with connection:
                await (await connection.channel()).queue_delete(queue)
            await readiness.wait_for(True)
            assert (await client.get("/readyz")).status_code == 200
        publisher = await env.connected()
        await publisher.publish(env.topic(), b"again")
        await handled.wait(1)
    finally:
        if app is not None:
            await app.shutdown()
        await env.aclose()
