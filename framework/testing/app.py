"""The test App context: the whole service in-process, a client per transport.

::

    async with TestApp(wire_app(bootstrap)) as t:
        order = (await t.http.post("/v1/orders", json={...})).json()
        reply = await OrderServiceStub(t.grpc).GetOrder(GetOrderRequest(id=order["id"]))
        async with t.websocket("/ws/orders") as ws:
            await ws.request("order.watch", {"order_id": order["id"]})
        await t.publish("payment-success", PaymentSucceeded(...))
        await t.broker.handled(on_payment_succeeded)

What runs, and over what:

* **resources, hooks, broker servers**: the App's own start and stop sequence
  (:meth:`framework.App.start` / :meth:`~framework.App.shutdown`), with every broker server's
  broker taken over by a :class:`~framework.testing.broker.TestBroker` (memory semantics,
  recorded), or watched only (``real_brokers=True``).
* **HTTP**: no socket. Each :class:`~framework.transport.http.HttpServer` is prepared (route
  wiring checked, as at start) and an ``httpx.AsyncClient`` on ``httpx.ASGITransport`` calls
  its FastAPI app directly: the body limit, the framework middleware pipeline and the error
  rendering run as in production; readiness follows the App.
* **gRPC**: the real :class:`~framework.transport.grpc.GrpcServer` (same interceptors,
  middleware, health) bound to ``127.0.0.1`` port 0 for the test, and a ``grpc.aio`` channel
  to it. grpcio has no in-process transport for Python servers, and a loopback TCP port is
  what grpc.aio supports everywhere (a ``unix:`` address saves little and is not portable);
  port 0 means no clash with the configured port or with a parallel test.
* **WebSocket**: the real :class:`~framework.transport.websocket.WebSocketServer` on
  ``127.0.0.1`` port 0 (its sessions, rooms and pushes are what the service's code uses), and
  :class:`~framework.testing.websocket.WsClient`, which speaks the envelope protocol.

The configured host and port of each server are put back when the context exits: the
service's config and objects are otherwise untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from framework.app import App
from framework.broker.publisher import Publisher
from framework.broker.server import BrokerServer
from framework.testing.broker import TestBroker
from framework.testing.websocket import WsClient

__all__ = ["TestApp"]

_LOOPBACK = "127.0.0.1"


class _InProcessHttp:
    """Stands in for an HttpServer in the App's server list: prepared, never bound."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.name = server.name

    @property
    def endpoint(self) -> str:
        return ""

    def bind_app(self, app: Any) -> None:
        self.server.bind_app(app)

    async def start(self) -> None:
        self.server.prepare()

    def set_serving(self, serving: bool) -> None:
        self.server.set_serving(serving)

    async def stop(self, timeout: float) -> None:
        self.server.set_serving(False)


def _kind(server: object) -> str:
    # By class name and module, so the kit imports no transport the service does not use.
    module = type(server).__module__
    for kind in ("http", "grpc", "websocket"):
        if module.startswith(f"framework.transport.{kind}"):
            return kind
    return ""


class TestApp:
    """Run ``app`` in-process for a test; ``async with TestApp(app) as t``.

    Args:
        app: an App that has not started (e.g. ``wire_app(bootstrap)``).
        real_brokers: leave the broker servers on their real brokers (Kafka, RabbitMQ, ...);
            the recording, :meth:`TestBroker.handled` and error surfacing still apply.
        dead_letter: dead-letter failed messages as the broker would, instead of raising the
            handler's error in the test (:class:`~framework.testing.broker.HandlerFailed`).
        partitions: partitions per topic of the memory brokers.

    Attributes (once entered): ``http`` (httpx.AsyncClient, or ``None`` without an HTTP
    server), ``grpc`` (grpc.aio channel, or ``None``), ``broker`` (the TestBroker).

    On exit the App is stopped (its full stop sequence) and then any handler failure not
    consumed is raised as :class:`~framework.testing.broker.HandlerFailed`.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        app: App,
        *,
        real_brokers: bool = False,
        dead_letter: bool = False,
        partitions: int = 4,
    ) -> None:
        self.app = app
        self.broker = TestBroker(
            [s for s in app.servers if isinstance(s, BrokerServer)],
            real=real_brokers,
            dead_letter=dead_letter,
            partitions=partitions,
        )
        self.http: Any = None
        self.grpc: Any = None
        self._ws_server: Any = None
        self._restore: list[tuple[object, str, Any]] = []
        self._servers: list[Any] = []
        self._signals = app.handle_signals

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(check=exc_type is None)

    async def start(self) -> None:
        """Take over the brokers, point the servers at in-process/loopback, start the App."""
        self._servers = list(self.app.servers)
        http_app = None
        grpc_server = None
        replaced: list[Any] = []
        for server in self._servers:
            kind = _kind(server)
            if kind == "http" and http_app is None:
                http_app = server.app
                replaced.append(_InProcessHttp(server))
                continue
            if kind == "http":
                replaced.append(_InProcessHttp(server))
                continue
            if kind in ("grpc", "websocket"):
                self._set(server, "host", _LOOPBACK)
                self._set(server, "port", 0)
                if kind == "grpc" and grpc_server is None:
                    grpc_server = server
                if kind == "websocket" and self._ws_server is None:
                    self._ws_server = server
            replaced.append(server)
        self.app.servers = replaced
        self.app.handle_signals = False
        self.broker.install()
        try:
            await self.app.start()
        except BaseException:
            self._undo()
            raise
        if http_app is not None:
            import httpx

            self.http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=http_app), base_url="http://testserver"
            )
        if grpc_server is not None:
            import grpc

            port = grpc_server.endpoint.rsplit(":", 1)[1]
            self.grpc = grpc.aio.insecure_channel(f"{_LOOPBACK}:{port}")

    async def stop(self, *, check: bool = True) -> None:
        """Close the clients, stop the App, put everything back; then, if ``check``, raise
        the first handler failure not consumed."""
        try:
            if self.http is not None:
                await self.http.aclose()
            if self.grpc is not None:
                await self.grpc.close()
            await self.app.shutdown()
        finally:
            self._undo()
        if check:
            self.broker.check()

    def _set(self, obj: object, name: str, value: Any) -> None:
        self._restore.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def _undo(self) -> None:
        self.broker.uninstall()
        for obj, name, value in reversed(self._restore):
            setattr(obj, name, value)
        self._restore.clear()
        if self._servers:
            self.app.servers = self._servers
        self.app.handle_signals = self._signals

    # -- clients ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def websocket(
        self, path: str = "/", *, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[WsClient]:
        """Connect to the App's WebSocket server at ``path``; closed on exit."""
        if self._ws_server is None:
            raise LookupError("the App has no WebSocket server")
        import websockets

        url = self._ws_server.endpoint + path
        connection = await websockets.connect(url, additional_headers=headers)
        client = WsClient(connection)
        try:
            yield client
        finally:
            await client.close()

    def publisher(self, server: str | None = None) -> Publisher:
        """A publisher on the broker of broker server ``server`` (the first by default)."""
        return self.broker.publisher(server)

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        deliver_at: datetime | None = None,
        server: str | None = None,
        tag: str | None = None,
    ) -> None:
        """Publish ``payload`` (JSON-encoded) to ``topic`` on the broker of ``server``,
        after ``delay`` seconds or at ``deliver_at`` if given (see
        :meth:`Publisher.publish <framework.broker.publisher.Publisher.publish>`), with
        ``tag`` for subscribers filtering on tags."""
        await self.publisher(server).publish(
            topic,
            payload,
            key=key,
            headers=headers,
            delay=delay,
            deliver_at=deliver_at,
            tag=tag,
        )
