"""NATS header conversion and the header names the NATS broker uses internally.

NATS headers are text lines (``Name: Value``, like HTTP/1): nats-py trims each value, turns
CR/LF into spaces and decodes what it receives as UTF-8 with replacement characters. The
framework's :class:`~framework.broker.message.Message` carries header values as ``str``
holding the header's bytes decoded as UTF-8 with ``surrogateescape``, so any bytes round-trip.
To keep them byte-exact over NATS, a value that the text form would alter (bytes that are not
UTF-8, leading or trailing whitespace, CR, LF, other control characters) is sent as the
base64 of its bytes, and its name is listed in the :data:`ENCODED` header; the receiver
decodes it back. Every other value travels as plain text, readable by any NATS client.

Header names must be NATS tokens (letters, digits and ``!#$%&'*+-.^_`|~``), as the NATS
protocol requires; another name raises :class:`ValueError` on publish.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

# The same exact bytes <-> str mapping as every other broker; re-exported for NATS users.
from framework.broker.message import header_bytes, header_text

__all__ = [
    "ENCODED",
    "INTERNAL",
    "KEY",
    "MSG_ID",
    "decode_headers",
    "encode_headers",
    "header_bytes",
    "header_text",
    "message_size",
]

#: Ordering key given to ``publish(key=...)``, as its bytes in base64.
KEY = "Pykratos-Key"
#: Comma-separated names of the headers whose values are the base64 of their bytes.
ENCODED = "Pykratos-Encoded"
#: JetStream's de-duplication id (the message id; kept in ``Message.id``, not in headers).
MSG_ID = "Nats-Msg-Id"
#: Headers removed from ``Message.headers`` on receipt.
INTERNAL = frozenset({KEY, ENCODED, MSG_ID})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PLAIN = re.compile(r"[^\x00-\x1f\x7f]*")  # no control characters (CR, LF, NUL, ...)


def _plain(value: str) -> bool:
    """True when NATS carries ``value`` unchanged as text."""
    if value != value.strip() or not _PLAIN.fullmatch(value):
        return False
    try:
        value.encode("utf-8")  # a surrogate (non-UTF-8 byte) cannot go as text
    except UnicodeEncodeError:
        return False
    return True


def encode_headers(headers: Mapping[str, str] | None, key: bytes | None) -> dict[str, str] | None:
    """The NATS headers for a publish of ``headers`` with ordering ``key`` (``None`` if none).

    Raises:
        ValueError: a header name that is not a NATS token, or one of the internal names.
    """
    if not headers and key is None:
        return None
    out: dict[str, str] = {}
    encoded: list[str] = []
    if headers:
        for name, value in headers.items():
            if not _TOKEN.fullmatch(name) or name in INTERNAL:
                raise ValueError(
                    f"header name {name!r} cannot be sent over NATS: names are tokens "
                    f"(letters, digits and !#$%&'*+-.^_`|~) other than {sorted(INTERNAL)}"
                )
            if _plain(value):
                out[name] = value
            else:
                out[name] = base64.b64encode(header_bytes(value)).decode("ascii")
                encoded.append(name)
    if encoded:
        out[ENCODED] = ",".join(encoded)
    if key is not None:
        out[KEY] = base64.b64encode(key).decode("ascii")
    return out


def decode_headers(raw: Mapping[str, str] | None) -> tuple[dict[str, str], bytes | None]:
    """``(headers, key)`` of a received message: the framework's headers without the
    internal ones, the encoded values decoded to their exact bytes, and the ordering key."""
    if not raw:
        return {}, None
    headers = {name: value for name, value in raw.items() if name not in INTERNAL}
    names = raw.get(ENCODED)
    if names:
        for name in names.split(","):
            value = headers.get(name)
            if value is not None:
                headers[name] = header_text(base64.b64decode(value))
    key = raw.get(KEY)
    return headers, None if key is None else base64.b64decode(key)


def message_size(body: bytes, headers: Mapping[str, str] | None) -> int:
    """The bytes the server counts against its ``max_payload`` for one message: the body
    plus the header block (``NATS/1.0`` line, one ``Name: Value`` line per header, a blank
    line). nats-py checks the body alone; a message whose headers push it over makes the
    server close the connection instead."""
    if not headers:
        return len(body)
    size = len(body) + 12  # b"NATS/1.0\r\n" and the closing b"\r\n"
    for name, value in headers.items():
        size += len(name) + len(value.encode("utf-8", "surrogateescape")) + 4  # ": ", CRLF
    return size
