"""The Kafka :class:`~framework.broker.broker.Broker`, on aiokafka.

``connect`` starts one producer at the configured ``acks`` (``"all"`` by default) used by
:meth:`KafkaBroker.publish`, the batching publishers and dead-lettering; a
``with_acks(level)`` handle at another level gets a producer of its own, started on its
first publish (aiokafka's ``acks`` is per producer) and stopped with the broker. Each
``subscribe`` starts its own group consumer
(:class:`~framework.transport.kafka.subscription.KafkaSubscription`).

Partitions are chosen here, not by aiokafka, with the broker's
:class:`~framework.transport.kafka.partitioner.Partitioner` (murmur2 by key, as the Java
client), which the batching publishers share: a key lands on the same partition whichever
way it is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, get_args

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError

from framework.broker.acks import Acks, PublishMode, publish_mode
from framework.broker.broker import Broker, MessageProcessor, PublishResult
from framework.broker.clientlog import connection_log
from framework.broker.options import check_options, option_choice
from framework.broker.schedule import due_time
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tagged_headers
from framework.transport.kafka.deadletter import KafkaDeadLetter, check_topic_name
from framework.transport.kafka.delay import MAX_DELAY, DelayLevels, DelayRelay, delay_headers
from framework.transport.kafka.errors import (
    KafkaProducerError,
    KafkaPublishTimeoutError,
    KafkaUnavailableError,
)
from framework.transport.kafka.options import (
    PRODUCER_ACKS,
    AutoOffsetReset,
    KafkaOptions,
    Ordering,
)
from framework.transport.kafka.partitioner import Partitioner
from framework.transport.kafka.publisher import BatchingPublisher
from framework.transport.kafka.records import encode_headers
from framework.transport.kafka.subscription import KafkaSubscription

__all__ = ["KafkaBroker"]

_log = logging.getLogger("pykratos.kafka")
# Errors of a publish that mean "the cluster is not reachable", not "this record is wrong".
_UNAVAILABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError)
# Seconds between two metadata probes while the cluster is unavailable (see _probe).
_PROBE_INTERVAL = 1.0


class KafkaBroker(Broker):
    """A Kafka (or Kafka-protocol, e.g. Tansu) cluster.

    Args:
        bootstrap_servers: ``host:port[,host:port...]``.
        client_id: client id; also the prefix of default group names.
        **options: any field of :class:`~framework.transport.kafka.options.KafkaOptions`.

    Subscriber options (``@router.subscriber(..., options={...})``):
        ``auto_offset_reset``: ``"earliest"`` (default for groups) or ``"latest"`` (always
        for broadcast subscribers, whose group is new on every start);
        ``ordering``: ``"auto"``, ``"partition"`` or ``"key"`` (see
        :mod:`framework.transport.kafka.workers`).

    Groups: ``spec.group``, else ``"<client_id>.<handler name>"``; a broadcast subscriber
    gets ``"<group>.<random id>"`` so that every instance receives every message.
    """

    kind = "kafka"
    #: subscriber options this broker reads (``BrokerServer`` rejects any other).
    supported_options = frozenset({"auto_offset_reset", "ordering"})
    acks_levels: ClassVar[Mapping[Acks, str]] = {
        "none": "native: acks=0",
        "leader": "native: acks=1",
        "all": "native: acks=all",
    }

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        client_id: str = "pykratos",
        **options: Any,
    ) -> None:
        self.options = KafkaOptions(
            bootstrap_servers=bootstrap_servers, client_id=client_id, **options
        )
        self._producer: AIOKafkaProducer | None = None
        # Producers of with_acks() levels other than the configured one, by level.
        self._other_producers: dict[Acks, AIOKafkaProducer] = {}
        self._producer_lock = asyncio.Lock()
        self.partitioner = Partitioner(
            self.options.partitioner, keyless=self.options.keyless_partitioning
        )
        self._subscriptions: list[KafkaSubscription] = []
        self._log_state = connection_log(self.kind)
        self._prober: asyncio.Task[None] | None = None
        self._levels = DelayLevels(self.options.delay_topic_prefix)
        self._levels_ready = False
        self._relay: DelayRelay | None = None

    @property
    def endpoint(self) -> str:
        """``kafka://host:port`` of the first bootstrap server."""
        return f"kafka://{self.options.servers[0]}"

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Start the producer; raise :class:`KafkaUnavailableError` (naming the servers, the
        cause and how long was tried) if the cluster does not answer within
        ``connect_timeout`` seconds. The client library's own lines about the failed attempt
        are suppressed: the error says it once."""
        if self._producer is not None:
            return
        self._log_state.install(self.endpoint)
        started = time.monotonic()
        options = self.options
        producer = self._make_producer(options.acks_level)
        try:
            with self._log_state.connecting():
                async with asyncio.timeout(options.connect_timeout):
                    await producer.start()
        except BaseException as exc:
            await producer.stop()
            elapsed = time.monotonic() - started
            last = self._log_state.last_connect_error
            if isinstance(exc, TimeoutError):
                cause = f"no answer within {options.connect_timeout:g}s" + (
                    f" (last client error: {last})" if last else ""
                )
                raise KafkaUnavailableError(options.bootstrap_servers, cause, elapsed) from exc
            if isinstance(exc, KafkaConnectionError | OSError):
                cause = f"no bootstrap server answered ({last or exc})"
                raise KafkaUnavailableError(options.bootstrap_servers, cause, elapsed) from exc
            if isinstance(exc, KafkaError) and options.enable_idempotence:
                raise KafkaProducerError(
                    f"Kafka producer on {options.bootstrap_servers} could not start with "
                    f"enable_idempotence=True: InitProducerId failed ({exc!r}); the broker "
                    "may not support idempotence (Tansu does not)"
                ) from exc
            raise
        self._producer = producer
        self._log_state.recovered(self.endpoint)
        self._prober = asyncio.create_task(self._probe(), name="kafka-availability")
        # Forwarding commits the delay topic's offsets: it must be confirmed (acks=all)
        # whatever the broker's level, like a dead letter.
        self._relay = DelayRelay(
            options, self._levels, self._dead_letter_producer, partitions=options.delay_partitions
        )
        if options.delay_relay:
            await self._start_relay()

    @property
    def relay(self) -> DelayRelay | None:
        """This broker's delay relay (after :meth:`connect`; see ``delay_relay``)."""
        return self._relay

    async def _start_relay(self) -> None:
        if self._relay is not None and not self._relay.running:
            await self._producer_for("all")
            await self._relay.start()
            self._levels_ready = True

    def _make_producer(self, level: Acks) -> AIOKafkaProducer:
        options = self.options
        return AIOKafkaProducer(
            bootstrap_servers=options.servers,
            client_id=options.client_id,
            acks=PRODUCER_ACKS[level],
            # Idempotence needs acks=all: a producer at another level goes without it.
            enable_idempotence=options.enable_idempotence and level == "all",
            linger_ms=options.linger_ms,
            max_batch_size=options.max_batch_size,
            max_request_size=options.max_request_size,
            compression_type=options.compression_type,
            request_timeout_ms=options.request_timeout_ms,
            **options.security_kwargs(),
        )

    async def _producer_for(self, level: Acks) -> AIOKafkaProducer:
        """The producer publishing at ``level``: the broker's, or one started for it."""
        producer = self._require_producer()
        if level == self.options.acks_level:
            return producer
        found = self._other_producers.get(level)
        if found is not None:
            return found
        async with self._producer_lock:  # concurrent first publishes start one producer
            found = self._other_producers.get(level)
            if found is None:
                found = self._make_producer(level)
                try:
                    async with asyncio.timeout(self.options.connect_timeout):
                        await found.start()
                except BaseException:
                    await found.stop()
                    raise
                self._other_producers[level] = found
        return found

    def _dead_letter_producer(self) -> AIOKafkaProducer:
        """The acks=all producer (started by ``subscribe``)."""
        if self.options.acks_level == "all":
            return self._require_producer()
        found = self._other_producers.get("all")
        if found is None:
            raise RuntimeError("KafkaBroker is not connected: await broker.connect() first")
        return found

    @property
    def default_acks(self) -> Acks:
        """The configured ``acks`` as a level."""
        return self.options.acks_level

    async def _probe(self) -> None:
        """While the cluster is reported unavailable, try a TCP connection to the bootstrap
        servers every second and report the recovery once one accepts: a consumer-only
        service publishes nothing that could tell. Idle while the cluster is available.

        A plain socket on purpose: asking aiokafka's client for metadata from here was seen
        to leave the producer waiting after the cluster came back.
        """
        outage = asyncio.Event()
        self._log_state.on_unavailable(outage.set)
        try:
            while True:
                await outage.wait()
                await asyncio.sleep(_PROBE_INTERVAL)
                if self._log_state.available or await self._reachable():
                    self._log_state.recovered(self.endpoint)
                    outage.clear()
        finally:
            self._log_state.forget(outage.set)

    async def _reachable(self) -> bool:
        for server in self.options.servers:
            host, _, port = server.rpartition(":")
            try:
                async with asyncio.timeout(_PROBE_INTERVAL):
                    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            except (OSError, TimeoutError, ValueError):
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        return False

    async def close(self) -> None:
        """Stop subscriptions still running, flush batching publishers, stop the producer.
        Safe to call twice or before ``connect``."""
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.stop(0)
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.stop()
        await self.close_batch_publishers()
        others, self._other_producers = self._other_producers, {}
        for other in others.values():
            await other.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaBroker is not connected: await broker.connect() first")
        return self._producer

    # -- publishing ------------------------------------------------------------------------

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
        """Publish one message; return its partition and offset once acknowledged at the
        broker's ``acks`` (``"all"`` by default) or a ``with_acks`` handle's level.

        The partition is ``partition`` if given, else the broker's partitioner's choice
        (murmur2 of the key, as the Java client; keyless: round-robin or random). At
        ``acks="none"`` it returns once the record is handed to the client, with the
        partition and no offset; a failure known later is reported (counted in
        :attr:`unconfirmed`, logged, passed to the handle's ``on_error``).

        Raises :class:`~framework.transport.kafka.errors.KafkaPublishTimeoutError` (503
        ``BROKER_UNAVAILABLE``) when the acknowledgement does not come within
        ``publish_timeout`` seconds or the client gives up on the cluster, and
        ``ValueError`` for a ``partition`` the topic does not have.

        ``delay`` (seconds) or ``deliver_at`` (a timezone-aware moment; past: now) writes
        the record to a delay level topic instead, from which a relay forwards it when due
        (:mod:`~framework.transport.kafka.delay`). Its partition is chosen now, as for an
        immediate publish (``partition=`` or the partitioner), and the relay puts it there;
        the result names the topic and partition, with no offset (known once forwarded).
        A delay beyond :data:`~framework.transport.kafka.delay.MAX_DELAY` is a
        ``ValueError``.
        """
        headers = tagged_headers(headers, tag)
        due = due_time(delay, deliver_at)
        mode = publish_mode(self.default_acks)
        producer = await self._producer_for(mode.acks)
        destination = topic
        raw_headers: list[tuple[str, bytes | None]] = []
        if headers:
            raw_headers.extend(encode_headers(headers))
        if due is not None:
            left = due - time.time()
            if left > MAX_DELAY:
                raise ValueError(
                    f"Kafka delays go up to {MAX_DELAY:.0f}s (about "
                    f"{MAX_DELAY / 86400:.0f} days), got {left:.0f}s for {topic!r}"
                )
            check_topic_name(topic, "publish: topic")
            if not self._levels_ready:
                await self._levels.ensure(self.options, self.options.delay_partitions)
                self._levels_ready = True
                if self._subscriptions and self.options.delay_relay is None and self._relay:
                    self._relay.start_soon()  # the topics exist now: no need to wait a check
            destination = self._levels.topic_for(left)
        timeout = self.options.publish_timeout
        try:
            # Every step may wait on the cluster: metadata while the topic is unknown (both
            # partitions_for and send), the future for the acknowledgement (aiokafka's own
            # limit is request_timeout_ms).
            async with asyncio.timeout(timeout):
                partitions = sorted(await producer.partitions_for(topic))
                chosen = self._choose(topic, key, partition, partitions)
                placed: int | None = chosen  # a delay topic's: aiokafka's choice (by key)
                if due is not None:
                    # Chosen now, by this publisher's partitioner, and carried to the relay.
                    raw_headers = delay_headers(raw_headers, topic, due, chosen)
                    placed = None
                future = await producer.send(
                    destination, body, key=key, partition=placed, headers=raw_headers or None
                )
                if not mode.confirmed:
                    future.add_done_callback(self._reporter(topic, mode))
                    return PublishResult(topic, chosen, None)
                metadata = await future
        except (TimeoutError, *_UNAVAILABLE) as exc:
            cause = "no acknowledgement" if isinstance(exc, TimeoutError) else repr(exc)
            self._log_state.unavailable(f"publish to {topic!r} failed: {cause}", self.endpoint)
            if not mode.confirmed:
                self.unconfirmed.report(topic, exc, mode)
            raise KafkaPublishTimeoutError(
                f"publish to {topic!r} not acknowledged by Kafka at "
                f"{self.options.bootstrap_servers} within {timeout:g}s ({cause})",
                topic=topic,
                timeout=timeout,
            ) from exc
        except Exception as exc:
            if not mode.confirmed:
                self.unconfirmed.report(topic, exc, mode)
            raise
        self._log_state.recovered(self.endpoint)
        if destination != topic:
            # The partition is known; the offset only once the relay forwarded the record.
            return PublishResult(topic, chosen)
        return PublishResult(topic, metadata.partition, metadata.offset)

    def _choose(
        self, topic: str, key: bytes | None, partition: int | None, partitions: list[int]
    ) -> int:
        if partition is None:
            return self.partitioner.partition(topic, key, partitions)
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise ValueError(f"partition must be an int, got {partition!r}")
        if partition not in partitions:
            raise ValueError(
                f"topic {topic!r} has partitions {partitions[0]}..{partitions[-1]}, got "
                f"partition={partition}"
            )
        return partition

    def _reporter(self, topic: str, mode: PublishMode) -> Any:
        """A done-callback reporting the failure of a fire-and-forget send."""

        def report(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                self.unconfirmed.report(topic, asyncio.CancelledError("send cancelled"), mode)
            elif future.exception() is not None:
                error = future.exception()
                assert error is not None
                self.unconfirmed.report(topic, error, mode)

        return report

    def batch_publisher(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
    ) -> BatchingPublisher:
        """A :class:`BatchingPublisher` on this broker's producer: one record batch per
        partition per chunk (flushed and closed with the broker).

        Raises:
            RuntimeError: the broker is not connected.
        """
        publisher = BatchingPublisher(
            self._require_producer(),
            max_request_size=self.options.max_request_size,
            partitioner=self.partitioner,
            chunk_size=chunk_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
        )
        self.track_batch_publisher(publisher)
        return publisher

    # -- consuming -------------------------------------------------------------------------

    def group_for(self, spec: SubscriberSpec) -> str:
        """The consumer group of ``spec`` (see the class docstring)."""
        group = spec.group or f"{self.options.client_id}.{spec.display_name}"
        if spec.broadcast:
            group = f"{group}.{uuid.uuid4().hex[:12]}"
        return group

    async def subscribe(
        self, spec: SubscriberSpec, processor: MessageProcessor
    ) -> KafkaSubscription:
        """Join ``spec``'s group and start consuming; return once partitions are assigned.

        Raises ``ValueError`` when the topic or dead-letter topic is not a valid Kafka topic
        name, :class:`~framework.transport.kafka.errors.KafkaUnavailableError` or
        :class:`~framework.transport.kafka.errors.KafkaJoinError` within ``join_timeout``.
        """
        check_options(spec, self.supported_options, self.kind)
        check_topic_name(spec.topic, f"subscriber {spec.display_name}: topic")
        if spec.dlq_topic is not None:
            check_topic_name(spec.dlq_topic, f"subscriber {spec.display_name}: dead-letter topic")
        # Dead letters go with acks=all whatever the broker's level: the original is
        # committed once its dead letter is acknowledged.
        await self._producer_for("all")
        reset = option_choice(
            spec,
            "auto_offset_reset",
            get_args(AutoOffsetReset),
            "latest" if spec.broadcast else self.options.auto_offset_reset,
        )
        ordering = option_choice(spec, "ordering", get_args(Ordering), self.options.ordering)
        subscription = KafkaSubscription(
            spec,
            processor,
            self.options,
            KafkaDeadLetter(
                self._dead_letter_producer, spec, max_request_size=self.options.max_request_size
            ),
            group_id=self.group_for(spec),
            auto_offset_reset=reset,
            ordering=ordering,
        )
        await subscription.start()
        self._subscriptions.append(subscription)
        if self.options.delay_relay is None and self._relay is not None:
            self._relay.start_soon(when_used=True)
        return subscription
