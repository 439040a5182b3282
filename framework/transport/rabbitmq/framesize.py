"""The content-header frame of a publish must fit in one AMQP frame of the connection.

A message's body may span many frames, but its properties (headers included) travel in a
single content-header frame. A frame whose payload exceeds the connection's negotiated
``frame_max`` less the 8 bytes of frame overhead (131,064 bytes by default) is a protocol
error: RabbitMQ closes the whole connection (``FRAME_ERROR ... frame_too_large``), failing
every publish, consume and ack in flight on it, and the same message would close it again
on every retry. So the size is checked before anything is written, and that one message is
refused with :class:`~framework.transport.rabbitmq.errors.MessageTooLargeError`.

The check is cheap in the common case: an upper bound of the frame's size from the header
lengths (no encoding) decides; only a message whose bound comes near the limit, or whose
headers nest tables or arrays, is marshalled to measure it exactly.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from collections.abc import Mapping
from typing import Any

import pamqp.frame
from pamqp import commands as spec
from pamqp.header import ContentHeader

from framework.transport.rabbitmq.errors import MessageTooLargeError

__all__ = ["FRAME_OVERHEAD", "check_header_frame", "header_frame_limit", "header_frame_size"]

#: Bytes of a frame around its payload: type (1), channel (2), size (4), frame-end (1).
FRAME_OVERHEAD = 8
# The payload of a content-header frame without headers: class, weight, body size and
# property flags (14 bytes) and every other property at its largest (the short strings at
# 256 bytes each, the rest fixed-size), rounded up.
_WITHOUT_HEADERS_BOUND = 4096
# Encoded size of a field-table entry beyond its value: a field name is a short string,
# which pamqp cuts to 128 bytes (1 length byte), and the value's type byte.
_ENTRY_BOUND = 1 + 128 + 1
# A scalar value's bytes at most (long long, double, timestamp, decimal), with its length.
_SCALAR_BOUND = 9


def header_frame_limit(raw_channel: object) -> int | None:
    """The largest content-header frame payload (bytes) ``raw_channel`` (an aiormq
    channel) may send: its connection's ``frame_max`` less the frame overhead, which aiormq
    keeps as ``max_content_size``. ``None`` if unknown or unlimited (nothing is checked)."""
    limit = getattr(raw_channel, "max_content_size", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    return limit


def header_frame_size(properties: spec.Basic.Properties) -> int:
    """Exact payload size (bytes) of the content-header frame carrying ``properties``.

    Raises:
        TypeError, ValueError: a property or header pamqp cannot encode.
    """
    header = ContentHeader(properties=properties, body_size=0)
    return len(pamqp.frame.marshal(header, 0)) - FRAME_OVERHEAD


def check_header_frame(
    properties: spec.Basic.Properties, limit: int | None, *, exchange: str, routing_key: str
) -> None:
    """Refuse a publish whose content-header frame would be larger than ``limit`` (see
    :func:`header_frame_limit`; ``None``: no check).

    Args:
        exchange, routing_key: where it is published (for the error message).

    Raises:
        MessageTooLargeError: the properties (headers included) do not fit in one frame;
            the connection is untouched.
    """
    if limit is None:
        return
    bound = _headers_bound(properties.headers)
    if bound is not None and bound + _WITHOUT_HEADERS_BOUND <= limit:
        return
    size = header_frame_size(properties)
    if size > limit:
        raise MessageTooLargeError(
            f"publish to exchange {exchange!r} routing key {routing_key!r}: its properties "
            f"and headers take {size} bytes, more than the {limit} bytes of one AMQP frame on "
            f"this connection (frame_max less {FRAME_OVERHEAD}); RabbitMQ would close the "
            "connection. Send large values in the body instead"
        )


def _headers_bound(headers: Mapping[str, Any] | None) -> int | None:
    """Upper bound of the encoded size of ``headers`` (bytes), without encoding them;
    ``None`` when they hold nested tables or arrays (measured exactly instead)."""
    if not headers:
        return 4
    total = 4  # the table's length
    for value in headers.values():
        total += _ENTRY_BOUND
        if isinstance(value, str):
            # UTF-8 takes up to 4 bytes a code point (surrogates are sent as byte arrays
            # of at most 3 bytes each: also covered).
            total += 4 + (len(value) if value.isascii() else 4 * len(value))
        elif isinstance(value, bytes | bytearray):
            total += 4 + len(value)
        elif value is None or isinstance(
            value, bool | int | float | decimal.Decimal | _dt.datetime
        ):
            total += _SCALAR_BOUND
        else:
            return None
    return total
