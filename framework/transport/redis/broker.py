"""The Redis :class:`~framework.broker.broker.Broker`, on redis-py's asyncio client.

A topic is a stream (``key_prefix + topic``). ``publish`` is ``XADD`` (the returned entry id
is the confirmation) with the broker's trimming policy; a clustering subscriber is a consumer
in a consumer group (``XREADGROUP``/``XACK``), a broadcast subscriber reads the stream
without a group; dead letters are entries of ``<topic>.dlq``. See
:mod:`~framework.transport.redis.subscription` for delivery, recovery and stop, and
:mod:`~framework.transport.redis.options` for the choices behind the defaults.

One connection pool serves everything: each subscription's blocking read holds one
connection for up to ``block_ms``, publishes and acks take others. The client's own retries
are off: a subscription and a publish each handle a lost connection themselves (logged once
per state change, retried), so nothing is retried twice.

Delay: ``publish(..., delay=)`` / ``publish(..., deliver_at=)`` writes the entry to a sorted-set
schedule that a mover (in this or another process, per ``delay_relay``) moves into the stream
when due, atomically (:mod:`~framework.transport.redis.schedule`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from framework.broker.acks import Acks
from framework.broker.broker import Broker, MessageProcessor, PublishResult
from framework.broker.closing import stop_subscriptions_now
from framework.broker.publisher import dead_letter
from framework.broker.schedule import due_time
from framework.broker.signature import handler_name
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tagged_headers
from framework.transport.redis.batching import RedisBatchingPublisher
from framework.transport.redis.entries import encode_fields
from framework.transport.redis.errors import RedisUnavailableError
from framework.transport.redis.options import KNOWN_OPTIONS, RedisOptions, resolve_settings
from framework.transport.redis.publishing import StreamPublisher
from framework.transport.redis.schedule import ScheduleKeys, ScheduleMover, schedule_entry
from framework.transport.redis.subscription import RedisSubscription

__all__ = ["RedisBroker"]

log = logging.getLogger("pykratos.redis")


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBroker(Broker):
    """Redis Streams (see the module docstring).

    Args:
        url: Redis URL.
        **options: any field of :class:`~framework.transport.redis.options.RedisOptions`.

    Subscriber options (``@router.subscriber(..., options={...})``): ``start_id``,
    ``prefetch``, ``claim_idle_ms`` (see :mod:`~framework.transport.redis.options`).

    Groups: ``spec.group``, else the handler's ``module.qualname`` (a group private to that
    handler, as on the other brokers). Consumer names are ``<client_name>.<random id>``, one
    per subscription.
    """

    kind = "redis"
    #: subscriber options this broker reads (``BrokerServer`` rejects any other).
    supported_options = KNOWN_OPTIONS
    #: ``"none"`` is refused: XADD's reply is how a client learns of a failure, and sending
    #: without awaiting it from concurrent tasks would reorder a key's messages.
    acks_levels: ClassVar[Mapping[Acks, str]] = {
        "leader": "native: XADD reply from the primary",
        "all": "emulated: the XADD reply, as leader (replicas are not waited for with WAIT)",
    }

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> None:
        self.options = RedisOptions(url=url, **options)
        self._client: Redis | None = None
        self._publisher: StreamPublisher | None = None
        self._subscriptions: list[RedisSubscription] = []
        self._mover: ScheduleMover | None = None
        self._schedule = ScheduleKeys(self.options.key_prefix)

    @property
    def endpoint(self) -> str:
        """The Redis URL without its password."""
        return _safe_url(self.options.url)

    @property
    def client(self) -> Redis:
        """The redis-py asyncio client (after :meth:`connect`)."""
        if self._client is None:
            raise RuntimeError("RedisBroker is not connected: call `await broker.connect()`")
        return self._client

    @property
    def subscriptions(self) -> list[RedisSubscription]:
        """Subscriptions started by this broker and not stopped yet."""
        return list(self._subscriptions)

    def stream(self, topic: str) -> str:
        """The Redis key of ``topic``'s stream (``key_prefix + topic``)."""
        return self.options.key_prefix + topic

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection pool and check Redis answers (``PING``).

        Raises:
            RedisUnavailableError: no answer within ``connect_timeout`` seconds.
        """
        if self._client is not None:
            return
        options = self.options
        client = Redis.from_url(
            options.url,
            client_name=options.client_name,
            socket_connect_timeout=options.connect_timeout,
            socket_timeout=options.socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            async with asyncio.timeout(options.connect_timeout):
                await client.ping()
        except (TimeoutError, OSError, RedisError) as exc:
            await client.aclose()
            raise RedisUnavailableError(
                f"cannot reach Redis at {self.endpoint} within "
                f"{options.connect_timeout:g}s: {exc!r}"
            ) from exc
        self._client = client
        self._publisher = StreamPublisher(client, options)
        self._mover = ScheduleMover(client, options)
        if options.delay_relay:
            self._mover.start()

    @property
    def mover(self) -> ScheduleMover | None:
        """This broker's schedule mover (after :meth:`connect`; see ``delay_relay``)."""
        return self._mover

    async def close(self) -> None:
        """Stop remaining subscriptions (without waiting for handlers), flush batching
        publishers and disconnect. Safe to call twice or before ``connect``."""
        await stop_subscriptions_now(self._subscriptions)
        await self.close_batch_publishers()
        mover, self._mover = self._mover, None
        if mover is not None:
            await mover.stop()
        client, self._client = self._client, None
        self._publisher = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

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
        maxlen: int | None = None,
        minid_age: float | None = None,
    ) -> PublishResult:
        """Append one entry to ``topic``'s stream; return once Redis assigned its id
        (``PublishResult.message_id``).

        Args:
            key: ordering key; subscribers handle messages with the same key in order.
            headers: string headers (stored as ``h:<name>`` fields, byte-exact).
            delay / deliver_at: seconds to wait, or a timezone-aware moment: the entry goes
                to the schedule and reaches the stream when due (a past ``deliver_at``:
                now). ``PublishResult.message_id`` is then the schedule id: the stream entry
                id is assigned when it is moved.
            tag: the message's tag (the ``x-tag`` header, :mod:`framework.broker.tags`).
            maxlen / minid_age: this publish's trimming, instead of the broker's (an
                immediate publish only: a scheduled entry is trimmed by the broker's policy
                when it is moved, so both at once is a ``ValueError``).
            partition: not supported (a stream has no partitions): raises
                ``NotImplementedError``.

        Raises:
            PublishFailedError: Redis refused the entry.
            PublishTimeoutError: Redis stayed unreachable for ``publish_timeout`` seconds
                (503 ``BROKER_UNAVAILABLE``).
        """
        if partition is not None:
            raise NotImplementedError(
                f"a Redis stream has no partitions (publish to {topic!r} with partition="
                f"{partition}): a key keeps its messages in order instead"
            )
        headers = tagged_headers(headers, tag)
        due = due_time(delay, deliver_at)
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError("RedisBroker is not connected: call `await broker.connect()`")
        if due is not None:
            if maxlen is not None or minid_age is not None:
                raise ValueError(
                    "maxlen/minid_age trim an immediate XADD; a scheduled entry is trimmed by "
                    "the broker's policy when it is moved into the stream"
                )
            schedule_id = await schedule_entry(
                self.client,
                self._schedule,
                self.options,
                self.stream(topic),
                encode_fields(body, key, headers),
                due,
            )
            return PublishResult(topic=topic, message_id=schedule_id)
        entry_id = await publisher.xadd(
            self.stream(topic),
            encode_fields(body, key, headers),
            maxlen=maxlen,
            minid_age=minid_age,
        )
        return PublishResult(topic=topic, message_id=entry_id)

    def batch_publisher(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
    ) -> RedisBatchingPublisher:
        """A :class:`~framework.transport.redis.batching.RedisBatchingPublisher`: one
        pipelined round trip of ``XADD`` per chunk, an entry id per message (flushed and
        closed with the broker).

        Raises:
            RuntimeError: the broker is not connected.
        """
        client = self._client
        if client is None:
            raise RuntimeError("RedisBroker is not connected: call `await broker.connect()`")
        publisher = RedisBatchingPublisher(
            client,
            self.options,
            chunk_size=chunk_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
        )
        self.track_batch_publisher(publisher)
        return publisher

    # -- consuming -------------------------------------------------------------------------

    def group_for(self, spec: SubscriberSpec) -> str:
        """The consumer group of a clustering ``spec`` (see the class docstring)."""
        return spec.group or handler_name(spec.handler)

    async def subscribe(
        self, spec: SubscriberSpec, processor: MessageProcessor
    ) -> RedisSubscription:
        """Create ``spec``'s group if missing and start consuming; returns once reading.

        Raises:
            UnsupportedOptionError: an unknown or invalid subscriber option.
            StreamGroupError: the group cannot be created (e.g. the key is not a stream).
        """
        settings = resolve_settings(spec, self.options, self.group_for(spec))
        subscription = RedisSubscription(
            spec=spec,
            processor=processor,
            options=self.options,
            settings=settings,
            client=self.client,
            dead_letter=partial(dead_letter, self, spec),
            consumer=f"{self.options.client_name}.{uuid.uuid4().hex[:12]}",
            on_stopped=self._forget,
        )
        await subscription.start()
        self._subscriptions.append(subscription)
        if self.options.delay_relay is None and self._mover is not None:
            self._mover.start()
        log.info(
            "subscribed %s: stream %s, %s",
            spec.display_name,
            settings.stream,
            "broadcast" if settings.group is None else f"group {settings.group}",
        )
        return subscription

    def _forget(self, subscription: RedisSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
