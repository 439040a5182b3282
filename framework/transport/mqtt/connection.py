"""One MQTT 5 session that reconnects: an aiomqtt client per network connection.

aiomqtt gives paho-mqtt an asyncio event loop (socket reader/writer callbacks, CONNECT in an
executor). Three things the brokers need are not in its public API, so this module reaches
the paho client it wraps (``aiomqtt.Client._client``) and the future aiomqtt sets on a
disconnection (``_disconnected``); aiomqtt is pinned below 3 for that reason:

* **manual acknowledgement** (paho's ``manual_ack``): the PUBACK (QoS 1) or PUBCOMP
  (QoS 2) of a received message is sent only when :meth:`Connection.ack` is called, after
  the handler finished;
* **PUBACK/PUBCOMP reason codes** of publishes, which aiomqtt drops: a refusal (>= 0x80)
  must fail the publish;
* messages are taken straight from paho's ``on_message`` callback, skipping aiomqtt's
  queue and the task it creates per message.

A new aiomqtt client is made for every connection attempt (aiomqtt's reused client can
report a reconnection as done before the CONNACK arrived). With ``clean_start`` off and a
session expiry, the server keeps the session (subscriptions, unacknowledged messages)
across connections with the same client id, and resends unacknowledged messages after a
reconnect (MQTT 5 §4.4). :attr:`Connection.generation` tells connections apart: packet ids
of an earlier connection must not be acknowledged on a later one.

State changes are logged once each at WARNING: connection lost, reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from framework.transport.mqtt.errors import MqttUnavailableError

__all__ = ["ConnectSettings", "Connection", "ConnectionLost", "OnMessage"]

log = logging.getLogger("pykratos.mqtt")

#: ``on_message(message, generation)``, called on the event loop for every PUBLISH received.
OnMessage = Callable[[paho.MQTTMessage, int], None]


class ConnectionLost(ConnectionError):
    """The connection a publish was waiting on closed before its acknowledgement."""


@dataclass(frozen=True, slots=True)
class ConnectSettings:
    """Where and how to connect (parsed once from the broker's options)."""

    url: str
    keepalive: int
    session_expiry: int
    receive_maximum: int
    connect_timeout: float
    reconnect_interval: float

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()

    def client(self, client_id: str, will: aiomqtt.Will | None) -> aiomqtt.Client:
        """A new aiomqtt client for one connection attempt."""
        parts = urlsplit(self.url)
        tls = parts.scheme == "mqtts"
        connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect.SessionExpiryInterval = self.session_expiry
        connect.ReceiveMaximum = self.receive_maximum
        client = aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            keepalive=self.keepalive,
            timeout=self.connect_timeout,
            properties=connect,
            will=will,
            tls_context=ssl.create_default_context() if tls else None,
        )
        return client


class Connection:
    """A reconnecting MQTT 5 session (see the module docstring).

    Args:
        settings: server and session settings.
        client_id: the session's client id: the same id resumes the same session.
        name: how logs name this connection.
        manual_ack: acknowledge received QoS 1/2 messages only through :meth:`ack`.
        on_message: receives every PUBLISH (with the connection's generation).
        on_connected: awaited after every (re)connection, before it counts as up (the
            subscription subscribes there); if it raises, the connection is dropped and
            retried like a network failure.
        will: the last will the server publishes if this session ends without DISCONNECT.
    """

    def __init__(
        self,
        settings: ConnectSettings,
        client_id: str,
        *,
        name: str,
        manual_ack: bool = False,
        on_message: OnMessage | None = None,
        on_connected: Callable[[aiomqtt.Client], Awaitable[None]] | None = None,
        will: aiomqtt.Will | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.name = name
        self.generation = 0
        self.connected = asyncio.Event()
        self._manual_ack = manual_ack
        self._on_message = on_message
        self._on_connected = on_connected
        self._will = will
        self._client: aiomqtt.Client | None = None
        self._pending: dict[int, asyncio.Future[ReasonCode]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: no reconnection will come."""
        return self._closing

    @property
    def client(self) -> aiomqtt.Client:
        """The aiomqtt client of the current connection."""
        if self._client is None:
            raise ConnectionLost(f"{self.name}: not connected to {self.settings.safe_url}")
        return self._client

    async def start(self) -> None:
        """Connect once (raising if that fails), then keep reconnecting in the background.

        Raises:
            MqttUnavailableError: no CONNACK within ``connect_timeout`` or a refusal.
        """
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                await self._connect()
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            raise MqttUnavailableError(
                f"cannot connect to MQTT at {self.settings.safe_url} as {self.client_id!r} "
                f"within {self.settings.connect_timeout:g}s: {exc!r}"
            ) from exc
        self._task = asyncio.create_task(self._supervise(), name=f"{self.name}: reconnect")

    def _new_client(self) -> aiomqtt.Client:
        client = self.settings.client(self.client_id, self._will)
        inner = client._client
        generation = self.generation + 1
        if self._manual_ack:
            inner.manual_ack_set(True)
        if self._on_message is not None:
            on_message = self._on_message
            inner.on_message = lambda _c, _u, message: on_message(message, generation)
        forward = cast(Callable[..., None] | None, inner.on_publish)  # aiomqtt's (v2 API)

        def on_publish(c: Any, u: Any, mid: int, code: ReasonCode, props: Any) -> None:
            future = self._pending.pop(mid, None)
            if future is not None and not future.done():
                future.set_result(code)
            if forward is not None:
                forward(c, u, mid, code, props)

        inner.on_publish = on_publish
        return client

    async def _connect(self) -> None:
        client = self._new_client()
        await client.__aenter__()
        try:
            self.generation += 1
            self._client = client
            if self._on_connected is not None:
                await self._on_connected(client)
        except BaseException:
            self._client = None
            await _leave(client, 1.0)
            raise
        self.connected.set()

    async def _supervise(self) -> None:
        while not self._closing:
            client = self._client
            assert client is not None
            with contextlib.suppress(Exception):
                await asyncio.shield(client._disconnected)
            self.connected.clear()
            self._client = None
            self._fail_pending()
            if self._closing:
                return
            cause = _cause(client)
            log.warning(
                "%s: lost the connection to %s (%s); reconnecting every %gs",
                self.name,
                self.settings.safe_url,
                cause,
                self.settings.reconnect_interval,
            )
            await _leave(client, 1.0)
            while not self._closing:
                await asyncio.sleep(self.settings.reconnect_interval)
                try:
                    async with asyncio.timeout(self.settings.connect_timeout):
                        await self._connect()
                except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
                    log.debug("%s: reconnect failed: %r", self.name, exc)
                    continue
                except Exception:
                    log.exception("%s: reconnected but could not resume", self.name)
                    continue
                log.warning("%s: reconnected to %s", self.name, self.settings.safe_url)
                break

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(f"{self.name}: connection lost"))

    def send(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None
    ) -> asyncio.Future[ReasonCode] | None:
        """Send one PUBLISH on the current connection.

        Returns a future of the PUBACK (QoS 1) / PUBCOMP (QoS 2) reason code, which fails with
        :class:`ConnectionLost` if the connection closes first; ``None`` for QoS 0.

        Raises:
            ConnectionLost: not connected.
        """
        inner = self.client._client
        info = inner.publish(topic, payload, qos, retain, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            reason = paho.error_string(info.rc)
            raise ConnectionLost(f"{self.name}: publish not sent: {reason}")
        if qos == 0:
            return None
        # The acknowledgement is read by a later loop callback: registering now is in time.
        future: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
        self._pending[info.mid] = future
        return future

    def ack(self, mid: int, qos: int, generation: int) -> None:
        """Send the PUBACK/PUBCOMP of a received message, if it came on this connection
        (a message of an earlier connection is resent by the server and acked then)."""
        client = self._client
        if client is None or generation != self.generation or qos == 0:
            return
        client._client.ack(mid, qos)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop reconnecting and DISCONNECT (normal disconnection: the server keeps the
        session until its expiry and does not publish the will). Idempotent."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        client, self._client = self._client, None
        self.connected.clear()
        self._fail_pending()
        if client is not None:
            await _leave(client, timeout)


def _cause(client: aiomqtt.Client) -> str:
    done = client._disconnected
    if done.done() and not done.cancelled() and done.exception() is not None:
        return str(done.exception())
    return "disconnected"


async def _leave(client: aiomqtt.Client, timeout: float) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(max(timeout, 0.1)):
            await client.__aexit__(None, None, None)
