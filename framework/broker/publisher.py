"""Publishing: :class:`Publisher` for business code, :class:`PublisherSpec` for what a service
declares it publishes (documentation: AsyncAPI), :func:`dead_letter` for brokers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from framework.broker.acks import Acks, OnPublishError
from framework.broker.batching import BatchingPublisher
from framework.broker.broker import Broker, ProcessResult, PublishResult
from framework.broker.codec import Codec, JsonCodec
from framework.broker.message import Message
from framework.broker.policy import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
)
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tag_matches
from framework.metadata import propagated
from framework.observer import current_observer

__all__ = [
    "MAX_DLQ_REASON",
    "Publisher",
    "PublisherBatch",
    "PublisherSpec",
    "dead_letter",
    "dlq_headers",
]

_log = logging.getLogger("pykratos.broker")
#: Longest reason written into a DLQ header: headers travel in every broker's frame, and a
#: stack-trace-sized reason must not break a publish.
MAX_DLQ_REASON = 1000


@dataclass(frozen=True, slots=True)
class PublisherSpec:
    """What ``router.publisher(topic, payload_type)`` records: a topic the service publishes
    to and the type of its payload. A declaration only (nothing is sent through it); the
    AsyncAPI document lists it as a ``send`` operation with the payload's schema.

    Attributes:
        topic: destination topic / routing key.
        payload_type: the payload's type (pydantic model, msgspec struct, protobuf message,
            ``str``, ``bytes``, ...).
        description: free text for the document.
        name: operation name in the document (``publish_<topic>`` by default).
    """

    topic: str
    payload_type: Any
    description: str = ""
    name: str = ""


class Publisher:
    """Encodes payloads with a codec and publishes them through a broker.

    Meant to be a DI provider (``providers.Singleton(Publisher, broker)``) that use cases
    receive, so business code never touches a broker client::

        await publisher.publish("order-created", OrderCreated(id=1), key=str(order.user_id))

    Args:
        broker: the broker to publish through.
        codec: encodes payloads (JSON by default).
        acks: the acknowledgement level of this publisher's messages (``"none"``,
            ``"leader"``, ``"all"``; see :mod:`framework.broker.acks`); ``None`` (the
            default) keeps the broker's configured level. A level the broker cannot give
            raises ``NotImplementedError`` here, naming those it can.
        on_error: ``on_error(topic, error)`` for fire-and-forget (``acks="none"``) publishes
            whose failure is known only after ``publish`` returned; they are counted in
            ``broker.unconfirmed`` and logged at ERROR either way.
    """

    def __init__(
        self,
        broker: Broker,
        codec: Codec | None = None,
        *,
        acks: Acks | None = None,
        on_error: OnPublishError | None = None,
    ) -> None:
        if acks is None and on_error is None:
            self.broker = broker
        else:
            level = broker.default_acks if acks is None else acks
            self.broker = broker.with_acks(level, on_error=on_error)
        self.codec: Codec = codec if codec is not None else JsonCodec()

    def batch(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
    ) -> PublisherBatch:
        """A :class:`PublisherBatch`: payloads encoded like :meth:`publish`, sent through the
        broker's batching publisher (:meth:`Broker.batch_publisher
        <framework.broker.broker.Broker.batch_publisher>`, same arguments), a future per
        message. Use ``async with`` (or ``close()``) to flush it; the broker's close flushes it
        too."""
        inner = self.broker.batch_publisher(
            chunk_size=chunk_size, flush_interval=flush_interval, max_pending=max_pending
        )
        return PublisherBatch(self, inner)

    def encode(
        self, payload: Any, key: str | bytes | int | None, headers: Mapping[str, str] | None
    ) -> tuple[bytes, bytes | None, Mapping[str, str] | None]:
        """``(body, key, headers)`` as :meth:`publish` sends them: the codec's body, the key
        as bytes, the request's propagated metadata added to the headers."""
        body = self.codec.encode(payload)
        if isinstance(key, str):
            key = key.encode("utf-8")
        elif isinstance(key, int):
            key = str(key).encode("ascii")
        carried = propagated()
        if carried:
            headers = {**carried, **(headers or {})}
        return body, key, headers

    async def publish(
        self,
        topic: str,
        payload: Any,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        *,
        deliver_at: datetime | None = None,
        partition: int | None = None,
        tag: str | None = None,
    ) -> PublishResult:
        """Encode ``payload`` and publish it; return once the broker confirmed.

        Args:
            topic: destination.
            payload: a model, struct, dict, str or bytes (whatever the codec encodes).
            key: ordering/partitioning key; ``str`` (and ``int``, as its decimal text) is
                sent as UTF-8.
            headers: header values as ``str``; non-UTF-8 bytes are sent exactly when
                given in the form ``Message.headers`` uses (``header_text``).
                The ``x-md-global-*`` metadata of the request being handled is added
                (:func:`framework.metadata.propagated`).
            delay: seconds before delivery, where the broker supports it (else it raises
                ``NotImplementedError``).
            deliver_at: a timezone-aware moment to deliver at instead (a past one means
                now; naive, or given with ``delay``: ``ValueError``).
            tag: the message's tag, for subscribers declared with ``tags=``
                (:mod:`framework.broker.tags`); ``ValueError`` if invalid.
            partition: the partition to publish to, where the broker has partitions (else
                it raises); by default the broker's partitioner chooses (by key).
        """
        body, key, headers = self.encode(payload, key, headers)
        observer = current_observer()
        # Measured for the metrics observer (framework.observer), if any: duration, failures.
        started = time.perf_counter() if observer is not None else 0.0
        try:
            result = await self.broker.publish(
                topic,
                body,
                key=key,
                headers=headers,
                delay=delay,
                deliver_at=deliver_at,
                partition=partition,
                tag=tag,
            )
        except Exception as exc:
            if observer is not None:
                observer.message_published(
                    self.broker.kind, topic, time.perf_counter() - started, type(exc).__name__
                )
            raise
        if observer is not None:
            observer.message_published(
                self.broker.kind, topic, time.perf_counter() - started, None
            )
        return result


class PublisherBatch:
    """Business-side batching: :meth:`Publisher.publish`'s encoding over a broker's
    :class:`~framework.broker.batching.BatchingPublisher` (made by :meth:`Publisher.batch`).

    ``submit`` returns a future per message (its own result or error), ``publish`` waits for
    one, ``flush``/``close``/``async with`` wait for everything submitted. Each confirmed or
    failed message is reported to the metrics observer, if any, with the time from submit to
    its confirmation.
    """

    def __init__(self, publisher: Publisher, inner: BatchingPublisher) -> None:
        self.publisher = publisher
        #: the broker's batching publisher underneath.
        self.inner = inner

    async def submit(
        self,
        topic: str,
        payload: Any,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        tag: str | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[PublishResult]:
        """Encode ``payload`` and submit it (waits only while ``max_pending`` messages are
        unconfirmed); see :meth:`Publisher.publish` for the arguments."""
        body, raw_key, headers = self.publisher.encode(payload, key, headers)
        future = await self.inner.submit(
            topic, body, key=raw_key, headers=headers, tag=tag, partition=partition
        )
        observer = current_observer()
        if observer is not None:
            kind = self.publisher.broker.kind
            started = time.perf_counter()

            def report(done: asyncio.Future[PublishResult]) -> None:
                error = None
                if done.cancelled():
                    error = "CancelledError"
                elif (exc := done.exception()) is not None:
                    error = type(exc).__name__
                observer.message_published(kind, topic, time.perf_counter() - started, error)

            future.add_done_callback(report)
        return future

    async def publish(
        self,
        topic: str,
        payload: Any,
        key: str | bytes | int | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        tag: str | None = None,
        partition: int | None = None,
    ) -> PublishResult:
        """Submit one payload and wait for its confirmation (raises its error)."""
        return await (await self.submit(topic, payload, key, headers, tag=tag, partition=partition))

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every submitted message is resolved (see ``BatchingPublisher.flush``)."""
        await self.inner.flush(timeout)

    async def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` and refuse new messages (``BatchingPublisher.close``)."""
        await self.inner.close(timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def dlq_headers(
    message: Message, result: ProcessResult, *, topic: str, attempts: int | None = None
) -> dict[str, str]:
    """The headers every broker writes on a dead-lettered copy of ``message``: the reason
    (truncated to a sane size), the error type, the original topic, the attempt count and,
    where the broker has them, the original partition and offset."""
    headers = {
        DLQ_REASON: result.reason[:MAX_DLQ_REASON],
        DLQ_ERROR_TYPE: result.error_type,
        DLQ_ORIGINAL_TOPIC: topic,
        DLQ_ATTEMPTS: str(result.attempts if attempts is None else attempts),
    }
    if message.partition is not None:
        headers[DLQ_ORIGINAL_PARTITION] = str(message.partition)
    if message.offset is not None:
        headers[DLQ_ORIGINAL_OFFSET] = str(message.offset)
    return headers


async def dead_letter(
    broker: Broker, spec: SubscriberSpec, message: Message, result: ProcessResult
) -> PublishResult | None:
    """Publish ``message`` to ``spec.dlq_topic`` with the DLQ headers of ``policy``.

    Brokers await it for a ``DEAD`` result before acking/committing the original. A broker
    with a ``dead_letter_topic(spec, topic)`` method chooses the destination (MQTT). The body and
    key are kept as received; the headers add the reason, the error type, where the message
    came from and how many attempts were made. With dead-lettering disabled (``dlq=""``) the
    message is logged and dropped, and ``None`` is returned; ``None`` too, silently, for a
    message of a failed batch that the subscriber's ``tags`` filtered out (not its to judge).
    """
    if not tag_matches(spec.tags, message):
        # In a failed batch, but never this subscriber's: filtered out by its tags.
        return None
    reason = result.reason[:MAX_DLQ_REASON]
    topic = message.topic or spec.topic
    # A broker may name its dead-letter topics its own way (MQTT: ``<topic>/dlq``, from the
    # concrete topic, since a wildcard filter cannot be published to).
    resolve = getattr(broker, "dead_letter_topic", None)
    destination = resolve(spec, topic) if resolve is not None else spec.dlq_topic
    if destination is None:
        _log.error(
            "%s: dropping message from %s after %d attempt(s), dead-lettering is disabled: %s",
            spec.display_name,
            topic,
            result.attempts,
            reason,
            extra={"subscriber": spec.display_name, "topic": topic},
        )
        return None
    headers = {**message.headers, **dlq_headers(message, result, topic=topic)}
    published = await broker.publish(destination, message.body, key=message.key, headers=headers)
    _log.warning(
        "%s: dead-lettered message from %s to %s: %s",
        spec.display_name,
        topic,
        destination,
        reason,
        extra={"subscriber": spec.display_name, "topic": topic, "dlq": destination},
    )
    return published
