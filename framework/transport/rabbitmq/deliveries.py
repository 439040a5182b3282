"""AMQP deliveries as framework messages, and the copies republished for retries and DLQs.

A delivery becomes a :class:`~framework.broker.message.Message`: the ordering key, the
attempt number and the original topic come from the internal headers of
:mod:`~framework.transport.rabbitmq.headers`, the other headers become strings. A copy
republished to a retry queue or to the dead-letter exchange keeps the delivery's body,
properties and typed headers (without those the broker adds when it dead-letters) and
gets the headers its destination needs. A message that did not come from RabbitMQ (no
``raw`` delivery) is copied from ``Message.headers``, whose non-UTF-8 values go out as the
byte arrays they came from (see :mod:`~framework.transport.rabbitmq.headers`).
"""

from __future__ import annotations

import uuid
from typing import Any

import aiormq.abc
from pamqp import commands as spec

from framework.broker.broker import ProcessResult
from framework.broker.message import Message
from framework.broker.publisher import dlq_headers
from framework.transport.rabbitmq import headers as hdr

__all__ = ["copy_properties", "dead_letter_headers", "retry_headers", "to_message"]


def _attempt(value: Any) -> int:
    # Written as an int by retry_headers; a foreign producer's unreadable value counts as a
    # first delivery rather than failing the consumer callback (the delivery would then
    # sit unacked, holding a prefetch slot, until the channel closes).
    if isinstance(value, int):
        return value
    try:
        return int(bytes(value) if isinstance(value, bytearray) else value)
    except (TypeError, ValueError):
        return 1


def to_message(delivered: aiormq.abc.DeliveredMessage) -> Message:
    """A delivery of our consumer as a :class:`Message` (``raw`` is the delivery)."""
    props = delivered.header.properties
    deliver: spec.Basic.Deliver = delivered.delivery  # type: ignore[assignment]  # consumer
    topic: str = deliver.routing_key or ""
    key: bytes | None = None
    attempt = 1
    raw_headers = props.headers
    if raw_headers:
        value = raw_headers.get(hdr.KEY)
        if value is not None:
            key = bytes(value) if isinstance(value, bytes | bytearray) else str(value).encode()
        value = raw_headers.get(hdr.ATTEMPT)
        if value is not None:
            attempt = _attempt(value)
        value = raw_headers.get(hdr.TOPIC)
        if value is not None:
            topic = str(value)
        headers = hdr.to_str_headers(raw_headers)
    else:
        headers = {}
    stamp = props.timestamp
    return Message(
        body=delivered.body,
        topic=topic,
        key=key,
        headers=headers,
        id=props.message_id or "",
        delivery_tag=deliver.delivery_tag,
        timestamp=stamp.timestamp() if stamp is not None else 0.0,
        attempt=attempt,
        raw=delivered,
    )


def copy_properties(message: Message, headers: dict[str, Any]) -> spec.Basic.Properties:
    """Properties for a republished copy: the original ones minus ``expiration`` (a
    per-message TTL would cut the retry delay short) and ``user_id`` (the broker checks it
    against the publishing connection)."""
    props = message.raw.header.properties if message.raw is not None else None
    if props is None:
        return spec.Basic.Properties(
            headers=headers, delivery_mode=2, message_id=message.id or uuid.uuid4().hex
        )
    return spec.Basic.Properties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=headers,
        delivery_mode=2,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        message_id=props.message_id or message.id or uuid.uuid4().hex,
        timestamp=props.timestamp,
        message_type=props.message_type,
        app_id=props.app_id,
    )


def _original_headers(message: Message) -> dict[str, Any]:
    """The delivery's AMQP headers for a republished copy, without the broker's
    dead-lettering headers (it adds fresh ones)."""
    props = message.raw.header.properties if message.raw is not None else None
    raw = props.headers if props is not None and props.headers else message.headers
    out = {k: hdr.encodable(v) for k, v in raw.items() if k not in hdr.BROKER_DEAD_LETTER}
    if message.key is not None:
        out[hdr.KEY] = bytearray(message.key)
    return out


def retry_headers(message: Message) -> dict[str, Any]:
    """Headers of the copy sent to a retry queue: the next attempt number and the topic,
    which the retry queue's dead-lettering back to the work queue would replace."""
    headers = _original_headers(message)
    headers[hdr.ATTEMPT] = message.attempt + 1
    headers[hdr.TOPIC] = message.topic
    return headers


def dead_letter_headers(message: Message, result: ProcessResult, queue: str) -> dict[str, Any]:
    """Headers of the copy sent to the dead-letter exchange: the DLQ headers of
    :mod:`framework.broker.policy` and the ``queue`` it was consumed from."""
    headers = _original_headers(message)
    headers.pop(hdr.ATTEMPT, None)
    headers.pop(hdr.TOPIC, None)
    # A TTL retry redelivers with attempt+1 in a header, so the message may know more
    # attempts than this process made.
    attempts = max(result.attempts, message.attempt)
    dlq = dlq_headers(message, result, topic=message.topic, attempts=attempts)
    headers.update((name, hdr.encodable(value)) for name, value in dlq.items())
    headers[hdr.ORIGINAL_QUEUE] = queue
    return headers
