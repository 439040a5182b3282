"""Headers as MQTT 5 user properties, and the user properties the MQTT broker uses itself.

A :class:`~framework.broker.message.Message` header value is a ``str`` holding the
header's bytes decoded as UTF-8 with ``surrogateescape`` (the framework's convention for
headers that are not UTF-8). MQTT 5 user properties are pairs of UTF-8 strings (§3.3.2.3.7)
in which U+0000 is forbidden and control characters and non-characters may make a server
drop the connection (§1.5.4; Mosquitto does). So:

* a header whose name and value are plain text travels as the user property
  ``(name, value)``, readable by any MQTT client;
* any other header (non-UTF-8 bytes, U+0000, control characters) travels as one
  ``(ESCAPED, "<base64 name>:<base64 value>")`` property, the base64 of the exact
  bytes, decoded back on receipt: byte-exact through consume, retry, dead letter and
  republish, at the price of being opaque to foreign MQTT clients.

The ordering key and the message id, which MQTT has no field for, ride in the internal
user properties :data:`KEY` and :data:`MESSAGE_ID`, stripped from ``Message.headers``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping

from framework.broker.message import header_bytes, header_text

__all__ = [
    "ESCAPED",
    "INTERNAL",
    "KEY",
    "MESSAGE_ID",
    "from_user_properties",
    "is_plain",
    "to_user_properties",
]

#: Ordering key given to ``publish(key=...)`` (as header text, escaped when needed).
KEY = "x-pykratos-key"
#: Message id generated at publish (MQTT 5 has no message-id property).
MESSAGE_ID = "x-message-id"
#: A header that is not plain text: ``"<base64 name>:<base64 value>"``.
ESCAPED = "x-pykratos-b64"
#: User properties removed from ``Message.headers`` on receipt.
INTERNAL = frozenset({KEY, MESSAGE_ID, ESCAPED})

# What a server may refuse in a UTF-8 string (MQTT 5 §1.5.4), plus what strict UTF-8 cannot
# encode at all (surrogates: the escaped bytes of a non-UTF-8 header).
_NOT_PLAIN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def is_plain(text: str) -> bool:
    """True when ``text`` can travel as an MQTT UTF-8 string as is."""
    return _NOT_PLAIN.search(text) is None


def _b64(text: str) -> str:
    return base64.b64encode(header_bytes(text)).decode("ascii")


def _unb64(text: str) -> str:
    return header_text(base64.b64decode(text, validate=True))


def _pair(name: str, value: str) -> tuple[str, str]:
    if is_plain(name) and is_plain(value):
        return (name, value)
    return (ESCAPED, f"{_b64(name)}:{_b64(value)}")


def to_user_properties(
    headers: Mapping[str, str] | None, *, key: bytes | None = None, message_id: str = ""
) -> list[tuple[str, str]]:
    """User properties for a published message (see the module docstring)."""
    pairs = [_pair(name, value) for name, value in headers.items()] if headers else []
    if key is not None:
        pairs.append(_pair(KEY, header_text(key)))
    if message_id:
        pairs.append((MESSAGE_ID, message_id))
    return pairs


def from_user_properties(
    pairs: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], bytes | None, str]:
    """``(headers, key, message id)`` from a received message's user properties.

    An ``ESCAPED`` property that does not decode (written by someone else) is kept as a
    plain header rather than failing the delivery.
    """
    headers: dict[str, str] = {}
    key: bytes | None = None
    message_id = ""
    for name, value in pairs:
        if name == ESCAPED:
            encoded_name, sep, encoded_value = value.partition(":")
            try:
                if not sep:
                    raise ValueError("no separator")
                name, value = _unb64(encoded_name), _unb64(encoded_value)
            except (ValueError, binascii.Error):
                headers[ESCAPED] = value
                continue
        if name == KEY:
            key = header_bytes(value)
        elif name == MESSAGE_ID:
            message_id = value
        else:
            headers[name] = value
    return headers, key, message_id
