"""The transport-neutral message every broker hands to a subscriber.

Bodies and keys are ``bytes``. Header values are ``str`` holding the header's bytes decoded
as UTF-8 with the ``surrogateescape`` error handler (:func:`header_text`): a text header reads
as ordinary text, and a value that is not UTF-8 (``b"\\xc3\\x28"``, written by a foreign
producer) becomes ``"\\udcc3("`` instead of a lossy replacement character, so that encoding it
back (:func:`header_bytes`) gives the exact original bytes. Every broker applies this on
receipt and its inverse on publish, so headers survive consume, retry, dead-lettering,
republishing and trace propagation byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HEADER_ENCODING",
    "HEADER_ERRORS",
    "MESSAGE_ID",
    "TAG_HEADER",
    "Message",
    "check_headers",
    "header_bytes",
    "header_text",
]

#: The header carrying a message's stable id, set once when the message is created (the
#: outbox sets it in the business transaction) and kept through retries, relays and
#: dead-lettering; the inbox de-duplicates on it.
MESSAGE_ID = "message-id"

#: The header carrying a message's tag (``publish(..., tag=...)``), on every broker; see
#: :mod:`framework.broker.tags`.
TAG_HEADER = "x-tag"

#: How header bytes map to ``str`` and back, on every broker.
HEADER_ENCODING = "utf-8"
HEADER_ERRORS = "surrogateescape"


def header_text(raw: bytes | bytearray) -> str:
    """Header bytes as the ``str`` a :class:`Message` carries (exact, never raises)."""
    return raw.decode(HEADER_ENCODING, HEADER_ERRORS)


def header_bytes(value: str) -> bytes:
    """The bytes of a header value: the inverse of :func:`header_text`.

    Raises ``UnicodeEncodeError`` only for a ``str`` that no bytes decode to (a lone
    surrogate outside ``\\udc80``-``\\udcff``), which cannot come from a received message.
    """
    return value.encode(HEADER_ENCODING, HEADER_ERRORS)


def check_headers(headers: Mapping[str, str] | None) -> None:
    """Check the header contract of ``publish(headers=)``: names and values are ``str`` (a
    number, ``None`` or bytes would be carried by one broker, refused by another, or fail a
    whole batch). Every broker's ``publish``, the batching publishers' ``submit`` and the
    outbox's ``add_message`` check their headers here.

    Raises:
        TypeError: naming the first header whose name or value is not a ``str``.
    """
    if not headers:
        return
    for name, value in headers.items():
        if type(name) is str and type(value) is str:  # exact types first: the hot path
            continue
        if not isinstance(name, str):
            raise TypeError(f"header names must be str, got {name!r} ({type(name).__name__})")
        if not isinstance(value, str):
            raise TypeError(
                f"header {name!r}: values must be str, got {value!r:.80} ({type(value).__name__})"
            )


@dataclass(slots=True)
class Message:
    """One message as received (or about to be published).

    Attributes:
        body: the encoded payload, exactly as the broker delivered it.
        topic: destination: Kafka topic, RabbitMQ routing key / queue, memory topic.
        key: partitioning/ordering key (Kafka key; RabbitMQ and memory use it for ordering).
        headers: headers that travel with the message. Values are the header bytes decoded
            as UTF-8 with ``surrogateescape`` (see the module docstring): text headers read
            as text, other bytes round-trip exactly; :meth:`header_bytes` gives the bytes.
            Republishing ``message.headers`` on any broker sends the same bytes again.
        id: message id (broker-assigned or generated at publish).
        partition: Kafka partition (None elsewhere).
        offset: Kafka offset / memory sequence number (None for RabbitMQ).
        delivery_tag: RabbitMQ delivery tag (None elsewhere).
        timestamp: seconds since the epoch, as the broker reports it.
        attempt: 1 on first delivery, incremented on every retry.
        raw: the client library's own record (aiokafka ConsumerRecord, aio-pika
            IncomingMessage), for the rare handler that needs it.
    """

    body: bytes
    topic: str = ""
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    id: str = ""
    partition: int | None = None
    offset: int | None = None
    delivery_tag: int | None = None
    timestamp: float = 0.0
    attempt: int = 1
    raw: Any = None

    @property
    def tag(self) -> str | None:
        """The message's tag (its :data:`TAG_HEADER` header), or ``None`` if untagged."""
        return self.headers.get(TAG_HEADER)

    def header_bytes(self, name: str) -> bytes | None:
        """The exact bytes of header ``name``, or ``None`` when it is absent."""
        value = self.headers.get(name)
        return None if value is None else header_bytes(value)
