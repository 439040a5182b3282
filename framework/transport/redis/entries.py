"""Conversions between stream entries and :class:`~framework.broker.message.Message`.

A message is stored as the fields of one stream entry: ``body`` (the bytes as given), ``key``
(the ordering key, when there is one) and one ``h:<name>`` field per header. Stream fields
and values are binary-safe, so the body and the key are stored byte for byte. Header values
are ``str`` in the framework: they are stored as :func:`~framework.broker.message.header_bytes`
and read back with :func:`~framework.broker.message.header_text`, so a non-UTF-8 header value
(which a received message carries as surrogate escapes) is stored and delivered again with its
exact bytes.

An entry written by another producer, without a ``body`` field, arrives with an empty body
and its fields as headers, so a handler taking ``Message`` can still read it.
"""

from __future__ import annotations

from collections.abc import Mapping

from framework.broker.message import Message, header_bytes, header_text

__all__ = ["BODY", "HEADER_PREFIX", "KEY", "encode_fields", "to_message"]

BODY = b"body"
KEY = b"key"
HEADER_PREFIX = b"h:"


def encode_fields(
    body: bytes, key: bytes | None, headers: Mapping[str, str] | None
) -> dict[bytes, bytes]:
    """The fields of the entry that ``XADD`` writes for one message."""
    fields = {BODY: body}
    if key is not None:
        fields[KEY] = key
    if headers:
        for name, value in headers.items():
            fields[HEADER_PREFIX + header_bytes(name)] = header_bytes(value)
    return fields


def to_message(topic: str, entry_id: bytes, fields: Mapping[bytes, bytes], attempt: int) -> Message:
    """One entry as a :class:`Message`: ``id`` is the entry id (stable across redeliveries,
    so handlers can deduplicate on it), ``raw`` is ``(entry_id, fields)``."""
    body = b""
    key = None
    headers: dict[str, str] = {}
    for name, value in fields.items():
        if name == BODY:
            body = value
        elif name == KEY:
            key = value
        elif name.startswith(HEADER_PREFIX):
            headers[header_text(name[2:])] = header_text(value)
        else:  # a field of a foreign producer
            headers[header_text(name)] = header_text(value)
    text_id = entry_id.decode()
    return Message(
        body,
        topic,
        key,
        headers,
        text_id,
        None,
        None,
        None,
        int(text_id.partition("-")[0]) / 1000.0,
        attempt,
        (entry_id, fields),
    )
