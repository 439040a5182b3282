"""AMQP header conversion and the header names the RabbitMQ broker uses internally.

The framework's :class:`~framework.broker.message.Message` carries string headers; AMQP
headers are typed (strings, bytes, numbers, nested tables). Incoming values are turned into
strings where that is lossless enough (numbers, bytes as UTF-8); nested values such as
``x-death`` are left out of ``Message.headers`` but remain on ``Message.raw``.

The internal headers below carry what AMQP has no property for (the ordering key, the
attempt number, the original topic of a retried message) and are stripped on receipt.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ATTEMPT",
    "DELAY_EXCHANGE_ARG",
    "DELAY_MS_ARG",
    "INTERNAL",
    "KEY",
    "ORIGINAL_QUEUE",
    "TOPIC",
    "to_str_headers",
]

#: Ordering key given to ``publish(key=...)`` (bytes).
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

#: Headers removed from ``Message.headers`` on receipt (also the broker's own ``x-death``).
INTERNAL = frozenset({KEY, ATTEMPT, TOPIC, DELAY_MS_ARG, DELAY_EXCHANGE_ARG, "x-death"})


def _to_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    return None  # nested tables/arrays: no faithful string form


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
