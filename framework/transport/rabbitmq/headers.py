"""AMQP header conversion and the header names the RabbitMQ broker uses internally.

The framework's :class:`~framework.broker.message.Message` carries string headers; AMQP
headers are typed (strings, bytes, numbers, nested tables). Incoming strings and byte arrays
become ``str`` by :func:`~framework.broker.message.header_text` (UTF-8 with
``surrogateescape``: exact for any bytes, including a non-UTF-8 long string, which pamqp
hands over as ``bytes``); numbers and timestamps become their text; nested values such as
``x-death`` are left out of ``Message.headers`` but remain on ``Message.raw``. On the way out
(:func:`to_amqp_headers`, :func:`encodable`) a value that is not valid UTF-8 text is sent as
an AMQP byte array (field type ``x``) holding its original bytes, so a header read from one
message and published again keeps its exact bytes.

The internal headers below carry what AMQP has no property for (the ordering key, the
attempt number, the original topic of a retried message) and are stripped on receipt.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from framework.broker.message import header_bytes, header_text
from framework.broker.tags import routing_tag

__all__ = [
    "ATTEMPT",
    "BROKER_DEAD_LETTER",
    "DELAY_EXCHANGE_ARG",
    "DELAY_MS_ARG",
    "INTERNAL",
    "KEY",
    "MAX_NAME_BYTES",
    "ORIGINAL_QUEUE",
    "TAG_ARG",
    "TOPIC",
    "encodable",
    "message_headers",
    "to_amqp_headers",
    "to_str_headers",
]

#: Longest header name (UTF-8 bytes) an AMQP field table carries (the spec's limit, which
#: pamqp enforces by cutting longer names).
MAX_NAME_BYTES = 128
#: Ordering key given to ``publish(key=...)`` (sent as an AMQP byte array).
KEY = "x-pykratos-key"
#: Delivery attempt of a message republished for a retry (int, 1 = first delivery).
ATTEMPT = "x-pykratos-attempt"
#: Topic (routing key) a retried message was first published with: the retry queue
#: dead-letters it back under the work queue's name, which would otherwise replace it.
TOPIC = "x-pykratos-topic"
#: Queue a dead letter was consumed from (extra DLQ header; the others are in policy.py).
ORIGINAL_QUEUE = "x-original-queue"
#: Headers-exchange match arguments of the delay buckets. No ``x-`` prefix on purpose:
#: RabbitMQ's headers exchange ignores headers starting with ``x-`` when matching.
DELAY_MS_ARG = "pykratos-delay-ms"
DELAY_EXCHANGE_ARG = "pykratos-delay-exchange"
#: The message's tag (``x-tag``) again, under a name the tag exchanges can match on (a
#: headers exchange ignores ``x-`` headers); see :mod:`~framework.transport.rabbitmq.topology`.
TAG_ARG = "pykratos-tag"

#: Headers RabbitMQ adds when it dead-letters (our retry and delay queues do): stripped
#: from ``Message.headers`` and from republished copies, where they would only pile up.
BROKER_DEAD_LETTER = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
#: Headers removed from ``Message.headers`` on receipt.
INTERNAL = (
    frozenset({KEY, ATTEMPT, TOPIC, DELAY_MS_ARG, DELAY_EXCHANGE_ARG, TAG_ARG}) | BROKER_DEAD_LETTER
)


def _to_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return header_text(value)
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    return None  # nested tables/arrays: no faithful string form


def _amqp_str(value: str) -> str | bytearray:
    # A str from header_text() of non-UTF-8 bytes holds surrogates, which pamqp cannot
    # encode as a long string: send its exact bytes as a byte array instead.
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return bytearray(header_bytes(value))
    return value


def encodable(value: Any) -> Any:
    """``value`` in a form pamqp can encode: it writes byte arrays from ``bytearray`` but
    decodes non-UTF-8 strings as ``bytes``, which it cannot write back; a ``str`` carrying
    non-UTF-8 bytes (see the module docstring) becomes a byte array of those bytes."""
    if isinstance(value, str):
        return _amqp_str(value)
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {k: encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encodable(v) for v in value]
    return value


def to_str_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """String view of AMQP headers, without the internal ones and nested values."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name in INTERNAL:
            continue
        text = _to_str(value)
        if text is not None:
            out[name] = text
    return out


def to_amqp_headers(headers: Mapping[str, str] | None) -> dict[str, Any]:
    """AMQP headers for ``publish(headers=...)``: the inverse of :func:`to_str_headers` for
    every received string or byte-array value (a fresh dict the caller may extend).

    Raises:
        ValueError: a header name longer than :data:`MAX_NAME_BYTES` in UTF-8.
    """
    if not headers:
        return {}
    for name in headers:
        # pamqp would cut a longer name to its first 128 bytes, with only a log warning:
        # the message would arrive under another header name.
        if len(name) > MAX_NAME_BYTES // 4 and len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(
                f"header name {name[:40]!r}... is {len(name.encode('utf-8'))} bytes in UTF-8: "
                f"AMQP header names go up to {MAX_NAME_BYTES} bytes"
            )
    return {name: encodable(value) for name, value in headers.items()}


def message_headers(headers: Mapping[str, str] | None, key: bytes | None) -> dict[str, Any]:
    """AMQP headers of a published message (a fresh dict the caller may extend): ``headers``
    (already carrying the message's ``x-tag``, if any) as :func:`to_amqp_headers` makes them,
    the ordering ``key`` under :data:`KEY`, and the tag again under :data:`TAG_ARG`, taken
    from the header so a dead letter or a republished message is routed the same."""
    amqp_headers = to_amqp_headers(headers)
    if key is not None:
        amqp_headers[KEY] = bytearray(key)
    tag = routing_tag(headers)
    if tag is not None:
        # The tag exchanges match on this name (a headers exchange ignores x- headers).
        amqp_headers[TAG_ARG] = encodable(tag)
    return amqp_headers
