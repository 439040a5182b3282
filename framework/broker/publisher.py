"""Publishing: :class:`Publisher` for business code, :class:`PublisherSpec` for what a service
declares it publishes (documentation: AsyncAPI), :func:`dead_letter` for brokers."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from framework.broker.acks import Acks, OnPublishError
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

__all__ = ["MAX_DLQ_REASON", "Publisher", "PublisherSpec", "dead_letter", "dlq_headers"]

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
        body = self.codec.encode(payload)
        if isinstance(key, str):
            key = key.encode("utf-8")
        elif isinstance(key, int):
            key = str(key).encode("ascii")
        carried = propagated()
        if carried:
            headers = {**carried, **(headers or {})}
        observer = current_observer()
        if observer is None:
            return await self.broker.publish(
                topic,
                body,
                key=key,
                headers=headers,
                delay=delay,
                deliver_at=deliver_at,
                partition=partition,
                tag=tag,
            )
        # Measured for the metrics observer (framework.observer): duration and failures.
        started = time.perf_counter()
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
            observer.message_published(
                self.broker.kind, topic, time.perf_counter() - started, type(exc).__name__
            )
            raise
        observer.message_published(self.broker.kind, topic, time.perf_counter() - started, None)
        return result


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
