"""Conversions between Kafka records and :class:`~framework.broker.message.Message`.

Kafka header values are bytes; the framework's headers are strings holding those bytes
decoded as UTF-8 with ``surrogateescape`` (see :mod:`framework.broker.message`), and encoded
back the same way on publish, so a value that is not UTF-8 (written by a foreign producer)
round-trips byte for byte. A ``None`` (null) header value reads as ``""``; the dead-letter
copy (:mod:`~framework.transport.kafka.deadletter`) is built from the record's own headers,
so it keeps nulls and repeated names too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from framework.broker.message import HEADER_ENCODING, HEADER_ERRORS, Message

__all__ = ["decode_headers", "encode_headers", "to_message"]


def encode_headers(headers: Mapping[str, str] | None) -> list[tuple[str, bytes]]:
    """``{"k": "v"}`` -> ``[("k", b"v")]`` (the form aiokafka sends); exact inverse of
    :func:`decode_headers` for every received value."""
    if not headers:
        return []
    return [
        (name, value.encode(HEADER_ENCODING, HEADER_ERRORS)) for name, value in headers.items()
    ]


def decode_headers(raw: Any) -> dict[str, str]:
    """aiokafka's ``((name, bytes | None), ...)`` -> ``{name: str}`` (lossless for bytes;
    a repeated name keeps its last value, as a dict must)."""
    if not raw:
        return {}
    return {
        name: value.decode(HEADER_ENCODING, HEADER_ERRORS) if value is not None else ""
        for name, value in raw
    }


def to_message(record: Any) -> Message:
    """An aiokafka ``ConsumerRecord`` as a framework :class:`Message`.

    ``id`` is ``topic/partition/offset``, the record's identity in Kafka (stable across
    redeliveries, so handlers can deduplicate on it); ``raw`` is the record itself.
    """
    raw_headers = record.headers
    topic = record.topic
    partition = record.partition
    offset = record.offset
    value = record.value
    # Positional construction: this runs once per consumed message.
    return Message(
        b"" if value is None else value,
        topic,
        record.key,
        decode_headers(raw_headers) if raw_headers else {},
        f"{topic}/{partition}/{offset}",
        partition,
        offset,
        None,
        record.timestamp / 1000.0,
        1,
        record,
    )
