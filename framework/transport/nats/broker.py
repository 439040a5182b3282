"""NATS implementation of :class:`framework.broker.broker.Broker` on nats-py.

One connection carries everything. Group subscribers consume JetStream: a durable pull
consumer per group and topic, with explicit acks, retries by ``nak`` with a delay and dead
letters published to ``<topic>.dlq`` before the message is ``term``-inated (see
:mod:`~framework.transport.nats.subscription`). Broadcast subscribers, and groups with the
``jetstream=False`` option, consume core NATS (see :mod:`~framework.transport.nats.core`),
where a handler's return value answers a request. Topics are NATS subjects, wildcards
(``*``, ``>``) included.

``publish`` stores the message in JetStream and returns after the stream's acknowledgement
(PubAck). JetStream needs a stream that captures the subject: with ``create_streams`` (the
default) the broker adds the subjects it uses to its own stream ``stream``, else the streams
must exist (see :mod:`~framework.transport.nats.streams`).

``publish(..., delay=)`` / ``deliver_at=`` is emulated (JetStream 2.9 has no scheduled
delivery): the message waits in a delay stream until a relay publishes it to its subject when
due (see :mod:`~framework.transport.nats.delay`; who runs the relay: ``delay_relay``).

After a connection loss nats-py reconnects every ``reconnect_interval`` seconds, restores the
subscriptions and sends what was buffered; pull loops resume by themselves and publishes
retry within ``publish_timeout`` (de-duplicated by ``Nats-Msg-Id``). Connection state changes
are logged once each.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from framework.broker.acks import Acks, publish_mode
from framework.broker.addresses import check_urls
from framework.broker.batching import BatchingPublisher
from framework.broker.broker import Broker, MessageProcessor, PublishResult, Subscription
from framework.broker.closing import stop_subscriptions_now
from framework.broker.schedule import DUE_HEADER, due_ms, due_time
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tagged_headers
from framework.checks import check_counts, check_seconds
from framework.transport.nats.batching import NatsBatchingPublisher
from framework.transport.nats.core import CoreSubscription
from framework.transport.nats.delay import DelayRelay, DelayStream
from framework.transport.nats.errors import NatsUnavailableError, PublishRefusedError, StreamError
from framework.transport.nats.headers import encode_headers
from framework.transport.nats.options import KNOWN_OPTIONS, SubscriberConfig, resolve
from framework.transport.nats.publishing import ConfirmedPublisher, CorePublisher, check_size
from framework.transport.nats.refusals import CoreRefusals
from framework.transport.nats.streams import Streams
from framework.transport.nats.subjects import check_publish_subject
from framework.transport.nats.subscription import NatsSubscription

__all__ = ["NatsBroker"]

log = logging.getLogger("pykratos.nats")


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc=f"***@{parts.hostname}:{parts.port or 4222}"))


class NatsBroker(Broker):
    """NATS broker with JetStream (see the module docstring).

    Args:
        servers: NATS URL (``nats://user:pass@host:4222``), or several separated by commas
            (a cluster: nats-py picks one and fails over to the others).
        stream: the stream the broker creates or extends for subjects no stream captures.
        create_streams: create or extend ``stream`` for subjects no stream captures; off,
            a missing stream is a :class:`~framework.transport.nats.errors.StreamError`.
        storage: storage of the stream the broker creates: ``"file"`` or ``"memory"``.
        max_age: seconds the broker's stream keeps a message (``0``: no limit).
        prefetch: messages fetched and not yet settled at most, per subscription (a
            subscriber may override it with the ``prefetch`` option).
        fetch_batch: messages asked for per pull request (option ``fetch_batch``).
        fetch_timeout: seconds a pull request waits for messages before it is renewed; also
            how long ``stop`` may wait for the last one.
        ack_wait: seconds JetStream waits for an ack before redelivering (option
            ``ack_wait``); in-progress acks are sent every third of it while a handler runs.
        max_ack_pending: unacknowledged messages JetStream allows a consumer, across all the
            instances of a group.
        deliver_policy: where a new durable consumer starts: ``"all"`` or ``"new"``.
        connect_timeout: seconds ``connect`` may take before failing.
        reconnect_interval: seconds between reconnection attempts after a connection loss.
        publish_timeout: seconds a publish may wait for its PubAck, across reconnects.
        jetstream_publish: publish with JetStream and wait for the stream's PubAck (the
            acknowledgement level ``"all"``: the stream's replicas stored it); off, a core
            NATS publish that returns once buffered (``"none"``, see
            :mod:`framework.broker.acks`). A ``Publisher(broker, acks=...)`` may choose the
            other; dead letters always wait for their PubAck.
        name: connection name shown by the server's monitoring (``/connz``).
        delay_relay: who relays delayed messages to their subjects when due
            (:mod:`~framework.transport.nats.delay`): ``None`` (the default) runs the relay
            in a broker once it subscribes to anything (consuming services relay);
            ``True`` from ``connect``; ``False`` never (another process must). Delayed
            messages wait in the delay stream while no relay runs.
        delay_max_pending: delayed messages that may wait for their time at once (the
            relay consumer's ``max_ack_pending``; ``-1``, the default: no limit); beyond it
            the next ones stay in the stream, later than due, until earlier ones are relayed.
    """

    kind = "nats"
    #: subscriber options this broker reads (checked by the broker server before subscribing).
    supported_options = KNOWN_OPTIONS
    acks_levels: ClassVar[Mapping[Acks, str]] = {
        "none": "native: core NATS publish",
        "leader": "emulated: JetStream PubAck, as all (a stream acknowledges once)",
        "all": "native: JetStream PubAck",
    }

    def __init__(
        self,
        servers: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "pykratos",
        create_streams: bool = True,
        storage: Literal["file", "memory"] = "file",
        max_age: float = 0.0,
        prefetch: int = 512,
        fetch_batch: int = 256,
        fetch_timeout: float = 1.0,
        ack_wait: float = 30.0,
        max_ack_pending: int = 10_000,
        deliver_policy: Literal["all", "new"] = "all",
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        publish_timeout: float = 30.0,
        jetstream_publish: bool = True,
        name: str = "pykratos",
        delay_relay: bool | None = None,
        delay_max_pending: int = -1,
    ) -> None:
        check_counts(
            "NatsBroker",
            prefetch=prefetch,
            fetch_batch=fetch_batch,
            max_ack_pending=max_ack_pending,
        )
        if delay_max_pending != -1:  # -1: JetStream's "no limit"
            check_counts("NatsBroker", delay_max_pending=delay_max_pending)
        check_seconds(
            "NatsBroker",
            fetch_timeout=fetch_timeout,
            ack_wait=ack_wait,
            connect_timeout=connect_timeout,
            reconnect_interval=reconnect_interval,
            publish_timeout=publish_timeout,
        )
        check_seconds("NatsBroker", allow_zero=True, max_age=max_age)  # 0: kept forever
        if not stream or any(c in stream for c in " .*>/\\"):
            raise ValueError(f"stream must be a name without spaces, '.', '*', '>', got {stream!r}")
        if storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', got {storage!r}")
        if deliver_policy not in ("all", "new"):
            raise ValueError(f"deliver_policy must be 'all' or 'new', got {deliver_policy!r}")
        check_urls("servers", servers, ("nats", "tls", "ws", "wss"))
        self.servers = [url.strip() for url in servers.split(",") if url.strip()]
        self.stream = stream
        self.create_streams = create_streams
        self.storage = storage
        self.max_age = max_age
        self.prefetch = prefetch
        self.fetch_batch = fetch_batch
        self.fetch_timeout = fetch_timeout
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.deliver_policy = deliver_policy
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.publish_timeout = publish_timeout
        self.jetstream_publish = jetstream_publish
        self.name = name
        self.delay_relay = delay_relay
        self.delay_max_pending = delay_max_pending
        self._delay_stream: DelayStream | None = None
        self._relay: DelayRelay | None = None
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._streams: Streams | None = None
        self._publisher: ConfirmedPublisher | None = None
        self._core_publisher: CorePublisher | None = None
        self._subscriptions: list[NatsSubscription | CoreSubscription] = []
        self._connected_once = False
        self._error_logged = False
        self._refusals = CoreRefusals()

    @property
    def client(self) -> Client:
        """The nats-py connection (after :meth:`connect`)."""
        if self._client is None:
            raise RuntimeError("NatsBroker is not connected: call `await broker.connect()`")
        return self._client

    @property
    def jetstream(self) -> JetStreamContext:
        """The JetStream context of the connection (after :meth:`connect`)."""
        if self._js is None:
            raise RuntimeError("NatsBroker is not connected: call `await broker.connect()`")
        return self._js

    @property
    def endpoint(self) -> str:
        """The first server URL without its credentials."""
        return _safe_url(self.servers[0])

    @property
    def subscriptions(self) -> list[NatsSubscription | CoreSubscription]:
        """Subscriptions started by this broker and not stopped yet."""
        return list(self._subscriptions)

    async def connect(self) -> None:
        """Connect and check that the server has JetStream.

        Raises:
            NatsUnavailableError: NATS unreachable within ``connect_timeout``, or without
                JetStream.
        """
        if self._client is not None:
            return
        try:
            client = await nats.connect(
                self.servers,
                name=self.name,
                connect_timeout=self.connect_timeout,
                reconnect_time_wait=self.reconnect_interval,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (OSError, TimeoutError, nats.errors.Error) as exc:
            raise NatsUnavailableError(
                f"cannot connect to NATS at {self.endpoint} within {self.connect_timeout:g}s: "
                f"{exc!r}"
            ) from exc
        js = client.jetstream(timeout=min(self.publish_timeout, 5.0))
        try:
            await js.account_info()
        except Exception as exc:
            await client.close()
            raise NatsUnavailableError(
                f"NATS at {self.endpoint} has no JetStream (start nats-server with -js): {exc!r}"
            ) from exc
        self._client, self._js = client, js
        self._streams = Streams(
            js,
            own=self.stream,
            create=self.create_streams,
            storage=self.storage,
            max_age=self.max_age,
        )
        self._publisher = ConfirmedPublisher(
            js,
            self._streams,
            timeout=self.publish_timeout,
            refused_since=self._refusals.refused_since,
        )
        self._core_publisher = CorePublisher(client, self._streams)
        self._delay_stream = DelayStream(js, self.stream, self.storage, create=self.create_streams)
        self._relay = DelayRelay(
            client,
            js,
            self._delay_stream,
            self._publisher,
            max_pending=self.delay_max_pending,
            fetch_timeout=self.fetch_timeout,
        )
        self._connected_once = True
        if self.delay_relay:
            await self._relay.start()

    @property
    def relay(self) -> DelayRelay | None:
        """This broker's delay relay (after :meth:`connect`; see ``delay_relay``)."""
        return self._relay

    async def _on_error(self, exc: Exception) -> None:
        subject = self._refusals.refused_subject(exc)
        if subject is not None:
            self._refusals.refused(subject)
            # Not a connection problem: the server refused a publish. A core one is reported
            # as that publish's failure; a JetStream one fails its own call (no PubAck).
            mode = self._refusals.mode_for(subject)
            if mode is not None:
                refused = PublishRefusedError(f"NATS refused the publish to {subject!r}: {exc}")
                self.unconfirmed.report(subject, refused, mode)
            else:  # a JetStream publish: it fails with PublishRefusedError
                log.warning("NATS at %s refused a publish: %s", self.endpoint, exc)
            return
        # nats-py reports every failed reconnection attempt: say it once per outage.
        if not self._error_logged:
            self._error_logged = True
            log.warning("NATS connection error at %s: %r", self.endpoint, exc)

    async def _on_disconnected(self) -> None:
        if self._client is not None and not self._client.is_closed:
            log.warning("disconnected from NATS at %s; reconnecting", self.endpoint)

    async def _on_reconnected(self) -> None:
        self._error_logged = False
        log.info("reconnected to NATS at %s", self.endpoint)

    async def close(self) -> None:
        """Stop remaining subscriptions (without waiting for handlers), send what is
        buffered (batching publishers flushed) and disconnect. Safe to call twice or before
        connect."""
        await stop_subscriptions_now(self._subscriptions)
        await self.close_batch_publishers()
        relay, self._relay, self._delay_stream = self._relay, None, None
        if relay is not None:
            await relay.stop()
        client, self._client = self._client, None
        self._js = self._streams = self._publisher = self._core_publisher = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

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
    ) -> PublishResult:
        """Publish ``body`` to subject ``topic`` and wait for JetStream's PubAck (at acks
        ``"none"``, or without ``jetstream_publish``: a core publish, returned once
        buffered, with no ``offset``).

        Args:
            key: ordering key; subscribers handle messages with the same key in order.
            headers: header values; any bytes round-trip (see
                :mod:`~framework.transport.nats.headers`).
            delay / deliver_at: seconds to wait, or a timezone-aware moment: the message is
                stored in the delay stream and relayed to ``topic`` when due (a past
                ``deliver_at``: now); see :mod:`~framework.transport.nats.delay`. A delayed
                message is always published with JetStream (the relay needs it stored).
            partition: not supported (a stream has no partitions).
            tag: the message's tag (the ``x-tag`` header, :mod:`framework.broker.tags`).

        Returns:
            the subject, the stream sequence as ``offset`` (``None`` for a delayed message:
            it has none until relayed) and the ``Nats-Msg-Id`` (kept when relayed).

        Raises:
            NotImplementedError: a ``partition``.
            ValueError: a subject with wildcards, or a header name NATS cannot carry; both
                ``delay`` and ``deliver_at``, a negative delay, a naive ``deliver_at``.
            StreamError: no stream captures ``topic`` and ``create_streams`` is off.
            PublishFailedError: no PubAck within ``publish_timeout``.
        """
        if partition is not None:
            raise NotImplementedError(
                f"NATS streams have no partitions (publish to {topic!r} with partition="
                f"{partition}): a key keeps its messages in order instead"
            )
        headers = tagged_headers(headers, tag)
        due = due_time(delay, deliver_at)
        publisher, core = self._publisher, self._core_publisher
        if publisher is None or core is None or self._delay_stream is None:
            raise RuntimeError("NatsBroker is not connected: call `await broker.connect()`")
        check_publish_subject(topic)
        msg_id = uuid.uuid4().hex
        encoded = encode_headers(headers, key) or {}
        check_size(topic, body, encoded, self._client)
        if due is not None:
            await self._delay_stream.ensure()
            encoded[DUE_HEADER] = str(due_ms(due))
            await publisher.publish(self._delay_stream.subject(topic), body, encoded, msg_id)
            return PublishResult(topic=topic, message_id=msg_id)
        mode = publish_mode(self.default_acks)
        if not mode.confirmed:
            self._refusals.published(topic, mode)
            try:
                await core.publish(topic, body, encoded, msg_id)
            except Exception as exc:
                self.unconfirmed.report(topic, exc, mode)
                raise
            return PublishResult(topic=topic, message_id=msg_id)
        ack = await publisher.publish(topic, body, encoded, msg_id)
        return PublishResult(topic=topic, offset=ack.seq, message_id=msg_id)

    def batch_publisher(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
    ) -> BatchingPublisher:
        """A :class:`~framework.transport.nats.batching.NatsBatchingPublisher`: a chunk's
        JetStream publishes sent at once on one reply subscription, a PubAck per message
        (flushed and closed with the broker). Without ``jetstream_publish`` (level
        ``"none"``) the default one instead, pipelining core publishes as :meth:`publish`
        makes them.

        Raises:
            RuntimeError: the broker is not connected.
        """
        if not self.jetstream_publish:
            return super().batch_publisher(
                chunk_size=chunk_size, flush_interval=flush_interval, max_pending=max_pending
            )
        client, streams = self._client, self._streams
        if client is None or streams is None:
            raise RuntimeError("NatsBroker is not connected: call `await broker.connect()`")
        publisher = NatsBatchingPublisher(
            client,
            streams,
            timeout=self.publish_timeout,
            refused_since=self._refusals.refused_since,
            chunk_size=chunk_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
        )
        self.track_batch_publisher(publisher)
        return publisher

    async def prepare_publish(self, topic: str) -> None:
        """Find (or make) the stream that captures ``topic``, once, so the batching
        publisher's publishes write in order (see :meth:`Broker.prepare_publish`).

        Raises:
            ValueError: a subject with wildcards.
            StreamError: no stream captures ``topic`` and ``create_streams`` is off.
        """
        streams = self._streams
        if streams is None:
            raise RuntimeError("NatsBroker is not connected: call `await broker.connect()`")
        check_publish_subject(topic)
        await streams.stream_for(topic)

    @property
    def default_acks(self) -> Acks:
        """``"all"`` with ``jetstream_publish`` (the default), else ``"none"``."""
        return "all" if self.jetstream_publish else "none"

    async def _publish_copy(
        self, subject: str, body: bytes, key: bytes | None, headers: dict[str, str], msg_id: str
    ) -> None:
        """Confirmed publish of a dead-letter copy (with its own de-duplication id)."""
        if self._publisher is None:
            raise RuntimeError("NatsBroker is closed")
        await self._publisher.publish(subject, body, encode_headers(headers, key) or {}, msg_id)

    async def request(
        self,
        topic: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> bytes:
        """Send a core NATS request and return the reply's body (a core subscriber's return
        value, encoded). ``topic`` must not be captured by a stream, whose PubAck would
        answer first.

        Raises:
            nats.errors.NoRespondersError: nobody subscribes to ``topic``.
            nats.errors.TimeoutError: no reply within ``timeout`` seconds.
        """
        reply = await self.client.request(
            topic, body, timeout=timeout, headers=encode_headers(headers, None)
        )
        return reply.data

    async def subscribe(self, spec: SubscriberSpec, processor: MessageProcessor) -> Subscription:
        """Start consuming ``spec``; return once the consumer exists and pulls (JetStream) or
        the server has the subscription (core NATS).

        Raises:
            StreamError: no stream for the topic or its dead letters (and ``create_streams``
                is off), a durable consumer that exists with another configuration, bad
                subscriber options.
        """
        config = resolve(
            spec,
            prefetch=self.prefetch,
            fetch_batch=self.fetch_batch,
            deliver_policy=self.deliver_policy,
            ack_wait=self.ack_wait,
        )
        streams = self._streams
        if streams is None:
            raise RuntimeError("NatsBroker is not connected: call `await broker.connect()`")
        if config.dead_letter is not None:
            await streams.stream_for(config.dead_letter)
        subscription: NatsSubscription | CoreSubscription
        if config.jetstream:
            subscription = await self._pull_subscription(spec, processor, config, streams)
        else:
            subscription = CoreSubscription(
                spec=spec,
                processor=processor,
                config=config,
                client=self.client,
                publish=self._publish_copy,
                on_stopped=self._forget,
            )
        try:
            await subscription.start()
        except BaseException:
            await subscription.stop(0)
            raise
        self._subscriptions.append(subscription)
        if self.delay_relay is None and self._relay is not None:
            await self._relay.start()
        log.info(
            "subscribed %s to %s (%s)",
            spec.display_name,
            config.subject,
            f"consumer {config.durable}" if config.jetstream else "core NATS",
        )
        return subscription

    async def _pull_subscription(
        self,
        spec: SubscriberSpec,
        processor: MessageProcessor,
        config: SubscriberConfig,
        streams: Streams,
    ) -> NatsSubscription:
        stream = config.stream or await streams.stream_for(config.subject)
        consumer = ConsumerConfig(
            durable_name=config.durable,
            name=config.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=config.ack_wait,
            max_ack_pending=self.max_ack_pending,
            max_deliver=-1,  # attempts are counted and ended by the subscription (term)
            filter_subject=config.subject,
            deliver_policy=DeliverPolicy.ALL
            if config.deliver_policy == "all"
            else DeliverPolicy.NEW,
        )
        try:
            await self.jetstream.add_consumer(stream, consumer)
        except BadRequestError as exc:
            raise StreamError(
                f"subscriber {spec.display_name!r}: cannot create the durable consumer "
                f"{config.durable!r} on stream {stream!r} ({exc}); an existing one with another "
                f"configuration must be deleted first (nats consumer rm)"
            ) from exc
        return NatsSubscription(
            spec=spec,
            processor=processor,
            config=config,
            client=self.client,
            stream=stream,
            publish=self._publish_copy,
            fetch_timeout=self.fetch_timeout,
            on_stopped=self._forget,
        )

    def _forget(self, subscription: NatsSubscription | CoreSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
