"""Two-phase stop (issue 8, item 18): intake stops everywhere at once, then servers drain in
reverse start order. Before, servers were stopped one by one in reverse order, so a broker
subscriber kept taking messages while the HTTP server drained."""

from __future__ import annotations

import asyncio
import logging

import grpc
import httpx
import pytest
from websockets.exceptions import InvalidStatus

from framework import App
from framework.broker import BrokerServer, Message, Router
from framework.transport import IntakeAware
from framework.transport.grpc import GrpcServer
from framework.transport.http import HttpServer
from framework.transport.http import Router as HttpRouter
from framework.transport.websocket import WebSocketServer
from tests.broker.helpers import Collector
from tests.grpc.echo_service import EchoService
from tests.grpc.protos import echo_pb2, echo_pb2_grpc

TIMEOUT = 10.0


class Recorder:
    """A server that journals its stop phases; ``intake=False`` leaves out stop_intake."""

    def __init__(self, name: str, journal: list[str], *, fail_intake: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail_intake = fail_intake

    @property
    def endpoint(self) -> str:
        return f"test://{self.name}"

    async def start(self) -> None:
        pass

    async def stop_intake(self) -> None:
        self.journal.append(f"intake {self.name}")
        if self.fail_intake:
            raise RuntimeError("listener already gone")

    async def stop(self, timeout: float) -> None:
        await asyncio.sleep(0)  # let any other phase interleave if the App allowed it
        self.journal.append(f"stop {self.name}")


class Legacy:
    """A server with only the two-method contract."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal
        self.endpoint = "test://legacy"

    async def start(self) -> None:
        pass

    async def stop(self, timeout: float) -> None:
        self.journal.append("stop legacy")


async def test_item18_every_intake_stops_before_any_server_drains() -> None:
    journal: list[str] = []
    servers = [Recorder("a", journal), Legacy(journal), Recorder("b", journal)]
    async with App("svc", servers=servers, handle_signals=False):
        pass
    assert sorted(journal[:2]) == ["intake a", "intake b"]
    assert journal[2:] == ["stop b", "stop legacy", "stop a"]


async def test_item18_a_failing_stop_intake_is_logged_and_the_server_still_drains(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []
    servers = [Recorder("a", journal), Recorder("b", journal, fail_intake=True)]
    with caplog.at_level(logging.ERROR, "pykratos.app"):
        async with App("svc", servers=servers, handle_signals=False):
            pass
    assert journal[2:] == ["stop b", "stop a"]
    assert "Recorder(b) failed to stop its intake" in caplog.text


def test_item18_every_framework_server_can_stop_its_intake() -> None:
    from framework.broker import MemoryBroker

    for server in (HttpServer(), GrpcServer(), WebSocketServer(), BrokerServer(MemoryBroker())):
        assert isinstance(server, IntakeAware), type(server).__name__


# -- each server: stop_intake refuses new work and leaves the work in flight alone ----------


async def test_item18_http_stop_intake_refuses_connections_and_finishes_requests() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    router = HttpRouter()

    @router.get("/slow")
    async def slow() -> dict[str, str]:
        entered.set()
        await release.wait()
        return {"status": "done"}

    http = HttpServer("127.0.0.1", 0)
    http.include_router(router)
    await http.start()
    try:
        async with httpx.AsyncClient(base_url=http.endpoint, timeout=TIMEOUT) as client:
            in_flight = asyncio.create_task(client.get("/slow"))
            await asyncio.wait_for(entered.wait(), TIMEOUT)
            await http.stop_intake()
            async with httpx.AsyncClient(base_url=http.endpoint, timeout=TIMEOUT) as late:
                with pytest.raises(httpx.ConnectError):
                    await late.get("/healthz")
            release.set()
            response = await asyncio.wait_for(in_flight, TIMEOUT)
            assert response.status_code == 200 and response.json() == {"status": "done"}
    finally:
        await http.stop(5)


async def test_item18_grpc_stop_intake_refuses_calls_and_finishes_calls_in_flight() -> None:
    echo = EchoService()
    server = GrpcServer()
    server.register(echo_pb2_grpc.add_EchoServicer_to_server, echo)
    await server.start()
    try:
        target = server.endpoint.removeprefix("grpc://")
        async with grpc.aio.insecure_channel(target) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            slow = asyncio.ensure_future(stub.Slow(echo_pb2.EchoRequest(text="s"), timeout=10))
            await asyncio.wait_for(echo.slow_entered.wait(), TIMEOUT)
            await server.stop_intake()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Unary(echo_pb2.EchoRequest(text="late"), timeout=5)
            # The late call is refused before any servicer runs: grpc reports it as UNAVAILABLE
            # (GOAWAY seen first) or CANCELLED (stream reset by the shutting-down server).
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            assert "handler" not in echo.events
            assert not slow.done()
            echo.slow_release.set()
            assert (await asyncio.wait_for(slow, TIMEOUT)).text == "s"
    finally:
        await server.stop(5)


async def test_item18_websocket_stop_intake_refuses_handshakes() -> None:
    from websockets.asyncio.client import connect

    ws = WebSocketServer()
    await ws.start()
    try:
        await ws.stop_intake()
        with pytest.raises((InvalidStatus, OSError)) as refused:
            async with connect(ws.endpoint, open_timeout=TIMEOUT):
                pass
        if isinstance(refused.value, InvalidStatus):
            assert refused.value.response.status_code == 503
    finally:
        await ws.stop(5)


# -- the reported case, on a real broker --------------------------------------------------------


@pytest.mark.rabbitmq
async def test_item18_a_rabbitmq_subscriber_takes_no_message_while_http_drains() -> None:
    from tests.rabbitmq.helpers import URL, RabbitEnv, read_queue
    from tests.services import require_url

    require_url(URL, "RabbitMQ")
    env = RabbitEnv(URL)
    try:
        topic = env.topic("stop-order")
        handled = Collector()
        router = Router()

        @router.subscriber(topic, group="g")
        async def on_message(message: Message) -> None:
            handled.add(message.body)

        entered, release = asyncio.Event(), asyncio.Event()
        http_router = HttpRouter()

        @http_router.get("/slow")
        async def slow() -> dict[str, str]:
            entered.set()
            await release.wait()
            return {"status": "done"}

        http = HttpServer("127.0.0.1", 0)
        http.include_router(http_router)
        draining = asyncio.Event()
        stop_http = http.stop

        async def stop(timeout: float) -> None:
            draining.set()
            await stop_http(timeout)

        http.stop = stop  # type: ignore[method-assign]
        broker_server = BrokerServer(env.broker(), [router])
        # As in the reference service: the broker server first, so it drains last.
        app = App("svc", servers=[broker_server, http], handle_signals=False, stop_timeout=20)
        publisher = await env.connected()
        await app.start()
        env.remember(broker_server)
        (subscription,) = broker_server.broker.subscriptions  # type: ignore[attr-defined]
        queue = subscription.queue
        await publisher.publish(topic, b"before stop")
        assert await handled.wait(1) == [b"before stop"]

        async with httpx.AsyncClient(base_url=http.endpoint, timeout=TIMEOUT) as client:
            in_flight = asyncio.create_task(client.get("/slow"))
            await asyncio.wait_for(entered.wait(), TIMEOUT)
            stopping = asyncio.create_task(app.shutdown())
            # HTTP is draining its request: a message published now must stay on the broker
            # for the next instance.
            await asyncio.wait_for(draining.wait(), TIMEOUT)
            await publisher.publish(topic, b"during stop")
            await asyncio.sleep(0.5)  # HTTP keeps draining a while; a live consumer gets it
            assert not stopping.done()
            release.set()
            assert (await asyncio.wait_for(in_flight, TIMEOUT)).status_code == 200
            await asyncio.wait_for(stopping, TIMEOUT)

        assert handled.items == [b"before stop"]
        (kept,) = await read_queue(URL, queue, 1)
        assert kept.body == b"during stop"
    finally:
        await env.aclose()
