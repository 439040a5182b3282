"""RabbitMQ implementation of :class:`framework.broker.broker.Broker` on aio-pika.

One robust connection (``aio_pika.connect_robust``) carries a confirm-mode publishing
channel, a channel for declarations, and one channel per subscription (its own QoS and
delivery tags). After a connection loss aio-pika reconnects every ``reconnect_interval``
seconds and restores the channels with their exchanges, queues and bindings; each
subscription then consumes again. Publishes wait for the restored channel (see
:mod:`~framework.transport.rabbitmq.publishing`).

Routing: ``publish(topic, ...)`` sends to the broker's ``exchange`` (a durable ``topic``
exchange named ``"pykratos"`` by default) with ``topic`` as the routing key; a subscriber
binds its queue there (or to the exchange in its options) with its topic as binding key.
Tags are filtered on the server: a subscriber with ``tags`` binds its queue, once per tag,
to a headers exchange that is itself bound to the topic exchange with the subscriber's keys
(see :mod:`~framework.transport.rabbitmq.topology`); untagged routing is unchanged.

Retries use TTL retry queues (see :mod:`~framework.transport.rabbitmq.topology`) and an
attempt header; dead letters go to the direct exchange ``dead_letter_exchange``, routed to
the ``<topic>.dlq`` queue with the DLQ headers of :mod:`framework.broker.policy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import ssl
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

import aio_pika
import aio_pika.abc
from aiormq.exceptions import AMQPError, InvalidFrameError, ProbableAuthenticationError
from pamqp import commands as spec
from yarl import URL

from framework.broker.acks import Acks, publish_mode
from framework.broker.addresses import check_url
from framework.broker.batching import BatchingPublisher
from framework.broker.broker import Broker, MessageProcessor, PublishResult
from framework.broker.clientlog import connection_log
from framework.broker.closing import stop_subscriptions_now
from framework.broker.schedule import due_time, remaining
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tagged_headers
from framework.checks import check_counts, check_seconds
from framework.transport.rabbitmq import headers as hdr
from framework.transport.rabbitmq.batching import RabbitBatchingPublisher
from framework.transport.rabbitmq.consumer import RabbitSubscription
from framework.transport.rabbitmq.errors import (
    PublishTimeoutError,
    RabbitUnavailableError,
    TopologyError,
)
from framework.transport.rabbitmq.options import (
    EXCHANGE_TYPES,
    KNOWN_OPTIONS,
    MAX_PREFETCH,
    resolve_topology,
)
from framework.transport.rabbitmq.publishing import (
    ConfirmedPublisher,
    UnconfirmedPublisher,
    persistent_properties,
)
from framework.transport.rabbitmq.topology import declare_delay_bucket

__all__ = ["MAX_DELAY_MS", "RabbitBroker"]

log = logging.getLogger("pykratos.rabbitmq")

# A delay bucket is deleted by RabbitMQ after this long unused (on top of its TTL), and
# re-declared (which renews the lease) when older than half of it: a message is always
# dead-lettered out of its bucket before the bucket can expire.
_BUCKET_MARGIN_MS = 120_000
# RabbitMQ refuses an x-message-ttl or x-expires above ten years (its MAX_EXPIRY_TIMER,
# 315,360,000,000 ms), and the failed declaration closes the channel the next delayed
# publishes use: a delay is checked against it before anything is declared.
_MAX_EXPIRY_MS = 315_360_000_000
MAX_DELAY_MS = _MAX_EXPIRY_MS - _BUCKET_MARGIN_MS


def _safe_url(url: str) -> str:
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url


def _connect_failure(url: str, exc: BaseException) -> str:
    """What a failed connection attempt means, in words (the client's errors do not say)."""
    parsed = URL(url)
    where = f"{parsed.host or '127.0.0.1'}:{parsed.port or 5672}"
    user = parsed.user or "guest"
    vhost = parsed.path[1:] or "/"
    if isinstance(exc, ProbableAuthenticationError):
        return f"login refused for user {user!r}: wrong user name or password"
    if isinstance(exc, InvalidFrameError) and "Connection.Close" in str(exc):
        # RabbitMQ answers Connection.Open with Connection.Close (530 NOT_ALLOWED) for an
        # unknown vhost or one the user may not access; aiormq only keeps the frame's repr.
        return f"vhost {vhost!r} not found or access refused for user {user!r}"
    if isinstance(exc.__cause__, ConnectionRefusedError) or (
        isinstance(exc, OSError) and exc.args and exc.args[0] == errno.ECONNREFUSED
    ):
        return f"connection refused by {where} (is RabbitMQ running and listening there?)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{where} unreachable: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


class RabbitBroker(Broker):
    """RabbitMQ broker (see the module docstring).

    Args:
        url: AMQP URL.
        prefetch: QoS prefetch count per subscription channel, 1 to 65535 (AMQP carries it
            as a short; a subscriber may override it with the ``prefetch`` option).
        exchange: exchange ``publish`` sends to and subscribers bind to by default.
        exchange_type: its type: ``"topic"`` (default), ``"direct"`` or ``"fanout"``.
        dead_letter_exchange: direct exchange that routes dead letters to their DLQ.
        delay_exchange: headers exchange behind ``publish(..., delay=)``.
        connect_timeout: seconds ``connect`` may take before failing.
        reconnect_interval: seconds between reconnection attempts after a connection loss.
        publish_timeout: seconds a publish may wait for a confirm, across reconnects; then
            it raises :class:`~framework.transport.rabbitmq.errors.PublishTimeoutError`
            (503 ``BROKER_UNAVAILABLE``). Keep it below the request timeout of the servers
            that publish, so a caller gets a 503 rather than a 504.
        mandatory: publish as mandatory, so a message that matches no queue raises
            :class:`~framework.transport.rabbitmq.errors.UnroutableError` instead of being
            silently dropped by RabbitMQ.
        publisher_confirms: wait for RabbitMQ's publisher confirm in ``publish`` (the
            acknowledgement level ``"all"``); off, ``publish`` is fire-and-forget (``"none"``:
            no confirm, a returned or refused message is reported, see
            :mod:`framework.broker.acks`). A ``Publisher(broker, acks=...)`` may choose the
            other; dead letters and retries are always confirmed.
        ack_batch: acknowledge with one ``multiple=True`` ack once this many deliveries
            finished in a row (capped at a quarter of the prefetch, so the broker never
            waits for acks to send more).
        ack_interval: ... or once the oldest unacked finished delivery is this many
            seconds old.
        instance_id: suffix of broadcast queue names (random by default).
        connection_name: connection name shown by ``rabbitmqctl list_connections``.
        ssl_cafile: CA bundle verifying the server of an ``amqps://`` URL (default: the
            system's trusted CAs).
        ssl_certfile: client certificate for an ``amqps://`` server requiring mutual TLS.
        ssl_keyfile: private key of ``ssl_certfile``.
    """

    kind = "rabbitmq"
    #: subscriber options this broker reads (checked by the broker server before subscribing).
    supported_options = KNOWN_OPTIONS
    acks_levels: ClassVar[Mapping[Acks, str]] = {
        "none": "native: confirm not awaited",
        "leader": "emulated: a publisher confirm, as all (RabbitMQ has one kind)",
        "all": "native: publisher confirm",
    }

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        prefetch: int = 256,
        exchange: str = "pykratos",
        exchange_type: str = "topic",
        dead_letter_exchange: str = "pykratos.dlx",
        delay_exchange: str = "pykratos.delay",
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        publish_timeout: float = 5.0,
        mandatory: bool = True,
        publisher_confirms: bool = True,
        ack_batch: int = 64,
        ack_interval: float = 0.05,
        instance_id: str | None = None,
        connection_name: str = "pykratos",
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        check_url("url", url, ("amqp", "amqps"))
        tls = URL(url).scheme == "amqps"
        if not tls and (ssl_cafile or ssl_certfile or ssl_keyfile):
            raise ValueError("ssl_cafile/ssl_certfile/ssl_keyfile need an amqps:// url")
        if bool(ssl_certfile) != bool(ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile = ssl_cafile, ssl_certfile, ssl_keyfile
        if exchange_type not in EXCHANGE_TYPES:
            raise ValueError(
                f"exchange_type must be one of {sorted(EXCHANGE_TYPES)}, got {exchange_type!r}"
            )
        if not exchange:
            raise ValueError("exchange must be a name: the default exchange cannot be bound")
        check_counts("RabbitBroker", maximum=MAX_PREFETCH, prefetch=prefetch)
        check_counts("RabbitBroker", ack_batch=ack_batch)  # ours: acks are one per multiple
        check_seconds(
            "RabbitBroker",
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
            publish_timeout=publish_timeout,
            ack_interval=ack_interval,
        )
        self.url = url
        self.prefetch = prefetch
        self.exchange = exchange
        self.exchange_type = exchange_type
        self.dead_letter_exchange = dead_letter_exchange
        self.delay_exchange = delay_exchange
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        self.mandatory = mandatory
        self.publisher_confirms = publisher_confirms
        self.ack_batch = ack_batch
        self.ack_interval = ack_interval
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.connection_name = connection_name
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._admin: aio_pika.abc.AbstractRobustChannel | None = None
        self._publisher: ConfirmedPublisher | None = None
        self._unconfirmed: UnconfirmedPublisher | None = None
        self._exchanges: set[str] = set()  # known to exist
        self._buckets: dict[tuple[str, int], float] = {}  # (exchange, ms) -> declared at
        self._subscriptions: list[RabbitSubscription] = []
        self._dlqs: set[str] = set()  # dead-letter queues declared by subscriptions
        self._log_state = connection_log(self.kind)

    @property
    def connection(self) -> aio_pika.abc.AbstractRobustConnection:
        """The underlying aio-pika robust connection (after :meth:`connect`)."""
        if self._connection is None:
            raise RuntimeError("RabbitBroker is not connected: call `await broker.connect()`")
        return self._connection

    @property
    def endpoint(self) -> str:
        """The broker URL without its password."""
        return _safe_url(self.url)

    @property
    def subscriptions(self) -> list[RabbitSubscription]:
        """Subscriptions started by this broker and not stopped yet."""
        return list(self._subscriptions)

    def _tls_kwargs(self) -> dict[str, Any]:
        """``ssl_context`` for an ``amqps://`` URL (aio-pika's own default otherwise)."""
        if URL(self.url).scheme != "amqps":
            return {}
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return {"ssl_context": context}

    async def connect(self) -> None:
        """Connect, open the publishing channel and declare the broker's exchange.

        A first connection that fails is final (no reconnection attempts, and the client
        library's "Reconnecting..." lines are suppressed): the error says what is wrong.

        Raises:
            RabbitUnavailableError: RabbitMQ unreachable, refusing the login or the vhost, or
                silent for ``connect_timeout``; the message says which, and after how long.
            TopologyError: ``exchange`` exists with another type.
        """
        if self._connection is not None:
            return
        self._log_state.install(self.endpoint)
        started = time.monotonic()
        try:
            with self._log_state.connecting():
                async with asyncio.timeout(self.connect_timeout):
                    connection = await aio_pika.connect_robust(
                        self.url,
                        timeout=self.connect_timeout,
                        reconnect_interval=self.reconnect_interval,
                        client_properties={"connection_name": self.connection_name},
                        **self._tls_kwargs(),
                    )
        except (TimeoutError, OSError, AMQPError) as exc:
            elapsed = time.monotonic() - started
            what = (
                f"no answer within {self.connect_timeout:g}s"
                if isinstance(exc, TimeoutError)
                else f"{_connect_failure(self.url, exc)} (after {elapsed:.2f}s)"
            )
            raise RabbitUnavailableError(
                f"cannot connect to RabbitMQ at {_safe_url(self.url)}: {what}"
            ) from exc
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._admin = await connection.channel(publisher_confirms=False)
            await self._admin.declare_exchange(self.exchange, self.exchange_type, durable=True)
        except BaseException as exc:
            await connection.close()
            if isinstance(exc, AMQPError):
                raise TopologyError(
                    f"cannot declare exchange {self.exchange!r} ({self.exchange_type}): {exc}"
                ) from exc
            raise
        self._connection = connection
        self._publisher = ConfirmedPublisher(channel, timeout=self.publish_timeout)
        self._exchanges.add(self.exchange)
        connection.close_callbacks.add(self._on_connection_lost)
        connection.reconnect_callbacks.add(self._on_reconnected)
        self._log_state.recovered(self.endpoint)

    def _on_connection_lost(self, connection: Any, exc: BaseException | None) -> None:
        # Our own close() clears _connection first; anything else is an outage that the
        # robust connection repairs (reported once, see framework.broker.clientlog).
        if connection is self._connection and exc is not None:
            self._log_state.unavailable(
                f"connection lost ({exc}); reconnecting every {self.reconnect_interval:g}s",
                self.endpoint,
            )

    def _on_reconnected(self, _connection: Any) -> None:
        self._log_state.recovered(self.endpoint)

    async def close(self) -> None:
        """Stop remaining subscriptions (without waiting for handlers), flush batching
        publishers and disconnect."""
        await stop_subscriptions_now(self._subscriptions)
        await self.close_batch_publishers()
        connection, self._connection = self._connection, None
        self._publisher = self._admin = self._unconfirmed = None
        self._exchanges.clear()
        self._buckets.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    @property
    def default_acks(self) -> Acks:
        """``"all"`` with ``publisher_confirms`` (the default), else ``"none"``."""
        return "all" if self.publisher_confirms else "none"

    async def _unconfirmed_publisher(self) -> UnconfirmedPublisher:
        """The channel without confirms, opened on first use."""
        if self._unconfirmed is None:
            channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
            self._unconfirmed = UnconfirmedPublisher(
                channel,
                timeout=self.publish_timeout,
            )
        return self._unconfirmed

    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        deliver_at: datetime | None = None,
        partition: int | None = None,
        tag: str | None = None,
        exchange: str | None = None,
    ) -> PublishResult:
        """Publish ``body`` with routing key ``topic`` and wait for the broker's confirm
        (without ``publisher_confirms`` or at acks ``"none"``: hand it over and return).

        Args:
            key: ordering key; subscribers handle messages with the same key in order.
            headers: header values as ``str``; non-UTF-8 bytes are sent exactly when
                given in the form ``Message.headers`` uses (``header_text``).
            delay: seconds to hold the message before it is routed (TTL delay bucket).
            deliver_at: a timezone-aware moment to route it at instead: the remaining time
                becomes its delay (one TTL bucket per distinct millisecond delay, each
                deleted once unused, so many distinct moments make many short-lived
                queues).
            tag: the message's tag (the ``x-tag`` header, :mod:`framework.broker.tags`),
                routed on the server to the subscribers with that tag and those without
                tags. With ``mandatory``, a tag that no queue takes raises
                :class:`~framework.transport.rabbitmq.errors.UnroutableError`, as an
                untagged message that no queue takes does.
            partition: not supported (RabbitMQ queues have no partitions): raises
                ``NotImplementedError``.
            exchange: target exchange; it must exist. By default the broker's exchange,
                or the dead-letter exchange when ``topic`` is the dead-letter queue of a
                subscription of this broker.
        """
        if partition is not None:
            raise NotImplementedError(
                f"RabbitMQ has no partitions (publish to {topic!r} with partition="
                f"{partition}): a key keeps its messages in order instead"
            )
        headers = tagged_headers(headers, tag)
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError("RabbitBroker is not connected: call `await broker.connect()`")
        mode = publish_mode(self.default_acks)
        target = self.exchange_for(topic) if exchange is None else exchange
        amqp_headers = hdr.message_headers(headers, key)
        route_exchange = target
        wait = remaining(due_time(delay, deliver_at))
        delay_ms = max(1, round(wait * 1000)) if wait > 0 else 0
        if delay_ms > MAX_DELAY_MS:
            raise ValueError(
                f"RabbitMQ delays go up to {MAX_DELAY_MS // 1000}s (about 10 years: its queue "
                f"TTL limit), got {wait:.0f}s for {topic!r}"
            )
        if target not in self._exchanges or delay_ms:
            await self._declare_for(topic, target, delay_ms)
        if delay_ms:
            amqp_headers[hdr.DELAY_MS_ARG] = str(delay_ms)
            amqp_headers[hdr.DELAY_EXCHANGE_ARG] = target
            route_exchange = self.delay_exchange
        properties = persistent_properties(amqp_headers)
        try:
            if mode.confirmed:
                await publisher.publish(
                    exchange=route_exchange,
                    routing_key=topic,
                    body=body,
                    properties=properties,
                    mandatory=self.mandatory,
                )
            else:
                unconfirmed = await self._unconfirmed_publisher()
                await unconfirmed.publish(
                    exchange=route_exchange,
                    routing_key=topic,
                    body=body,
                    properties=properties,
                    mandatory=self.mandatory,
                    report=partial(self.unconfirmed.report, mode=mode),
                )
        except TopologyError:
            self.forget_exchange(target)  # deleted meanwhile? check again next time
            raise
        except Exception as exc:
            if not mode.confirmed:
                self.unconfirmed.report(topic, exc, mode)
            raise
        self._log_state.recovered(self.endpoint)  # a no-op unless an outage was reported
        return PublishResult(topic=topic, message_id=properties.message_id)

    def exchange_for(self, topic: str) -> str:
        """The exchange a publish to ``topic`` goes to without ``exchange=``: the broker's,
        or the dead-letter exchange when ``topic`` is the dead-letter queue of a
        subscription of this broker (e.g. from
        :func:`framework.broker.publisher.dead_letter`): that queue is bound there."""
        return self.dead_letter_exchange if topic in self._dlqs else self.exchange

    def forget_exchange(self, name: str) -> None:
        """``name`` was found missing (a publish to it was refused): the next publish to it
        checks it again first."""
        self._exchanges.discard(name)

    def batch_publisher(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
    ) -> BatchingPublisher:
        """A :class:`~framework.transport.rabbitmq.batching.RabbitBatchingPublisher`: a
        chunk's messages written at once to the confirm-mode channel, a ``Basic.Ack``
        resolving each (flushed and closed with the broker). Without
        ``publisher_confirms`` (level ``"none"``) the default one instead, pipelining
        :meth:`publish` as it makes them.

        Raises:
            RuntimeError: the broker is not connected.
            ValueError: invalid sizes (see ``BatchingPublisher``).
        """
        if not self.publisher_confirms:
            return super().batch_publisher(
                chunk_size=chunk_size, flush_interval=flush_interval, max_pending=max_pending
            )
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError("RabbitBroker is not connected: call `await broker.connect()`")
        return self.track_batch_publisher(
            RabbitBatchingPublisher(
                self,
                publisher,
                chunk_size=chunk_size,
                flush_interval=flush_interval,
                max_pending=max_pending,
            )
        )

    async def prepare_publish(self, topic: str) -> None:
        """Check, once, the exchange a publish to ``topic`` goes to (the broker's, or the
        dead-letter exchange for a dead-letter queue), so the batching publisher's
        publishes write in order (see :meth:`Broker.prepare_publish`).

        Raises:
            TopologyError: the exchange does not exist.
            PublishTimeoutError: RabbitMQ unreachable for ``publish_timeout`` seconds.
        """
        if self._publisher is None:
            raise RuntimeError("RabbitBroker is not connected: call `await broker.connect()`")
        target = self.exchange_for(topic)
        if target not in self._exchanges:
            await self._declare_for(topic, target, 0)

    async def _declare_for(self, topic: str, target: str, delay_ms: int) -> None:
        """Check ``target`` exists and declare the delay bucket of ``delay_ms`` if any."""
        try:
            # Declarations wait for a reconnect like publishes do, bounded the same way.
            async with asyncio.timeout(self.publish_timeout):
                if target not in self._exchanges:
                    await self._check_exchange(target)
                if delay_ms:
                    await self._delay_bucket(target, delay_ms)
        except TimeoutError as exc:
            raise PublishTimeoutError(
                f"publish to {target!r}: RabbitMQ unreachable for {self.publish_timeout:g}s",
                topic=topic,
                timeout=self.publish_timeout,
            ) from exc

    async def publish_raw(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: spec.Basic.Properties,
        mandatory: bool,
    ) -> None:
        """Confirmed publish of prepared AMQP properties (used for retries and DLQ)."""
        if self._publisher is None:
            raise RuntimeError("RabbitBroker is not connected: call `await broker.connect()`")
        await self._publisher.publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            properties=properties,
            mandatory=mandatory,
        )

    async def _check_exchange(self, name: str) -> None:
        if name == "":
            self._exchanges.add(name)  # the default exchange always exists
            return
        # A failed passive declare closes its channel: use a throwaway one.
        channel = await self.connection.channel(publisher_confirms=False)
        try:
            await channel.declare_exchange(name, passive=True, robust=False)
        except AMQPError as exc:
            raise TopologyError(
                f"exchange {name!r} does not exist: subscribe to it first or declare it ({exc})"
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        self._exchanges.add(name)

    async def _delay_bucket(self, target: str, delay_ms: int) -> None:
        now = time.monotonic()
        declared = self._buckets.get((target, delay_ms))
        if declared is not None and now - declared < _BUCKET_MARGIN_MS / 2000:
            return
        assert self._admin is not None
        if self._admin.is_closed:
            # A declaration the server refused closed this channel: reopen it now rather
            # than fail every delayed publish until the robust channel restores itself.
            await self._admin.reopen()
        await declare_delay_bucket(
            self._admin,
            delay_exchange=self.delay_exchange,
            target_exchange=target,
            delay_ms=delay_ms,
            expires_ms=delay_ms + _BUCKET_MARGIN_MS,
        )
        self._buckets[(target, delay_ms)] = now

    async def subscribe(
        self, spec: SubscriberSpec, processor: MessageProcessor
    ) -> RabbitSubscription:
        """Declare the subscriber's topology and start consuming; returns once consuming."""
        topology = resolve_topology(
            spec,
            default_exchange=self.exchange,
            default_exchange_type=self.exchange_type,
            default_prefetch=self.prefetch,
            dead_letter_exchange=self.dead_letter_exchange,
            instance_id=self.instance_id,
        )
        channel = await self.connection.channel(publisher_confirms=False)
        subscription = RabbitSubscription(
            spec=spec,
            processor=processor,
            topology=topology,
            channel=channel,
            connection=self.connection,
            publish_raw=self.publish_raw,
            ack_batch=min(self.ack_batch, max(1, topology.prefetch // 4)),
            ack_interval=self.ack_interval,
            on_stopped=self._forget,
        )
        try:
            await subscription.start()
        except BaseException:
            await subscription.stop(0)
            raise
        self._exchanges.add(topology.exchange)
        if topology.dlq_routing_key is not None:
            self._exchanges.add(topology.dead_letter_exchange)
            self._dlqs.add(topology.dlq_routing_key)
        self._subscriptions.append(subscription)
        log.info(
            "subscribed %s: queue %s on exchange %s (%s) keys %s",
            spec.display_name,
            topology.queue,
            topology.exchange,
            topology.exchange_type,
            ",".join(topology.binding_keys),
        )
        return subscription

    def _forget(self, subscription: RabbitSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
