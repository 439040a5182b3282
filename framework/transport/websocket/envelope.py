"""Wire format of WebSocket messages: the JSON envelope and the binary framing.

**Text frames** carry a JSON envelope::

    {"type": "order.get", "payload": {"id": 7}, "id": "c-42"}

``type`` is required (a non-empty string), ``payload`` defaults to ``null`` and ``id`` is an
optional correlation id (string or number, at most :data:`MAX_ID_LENGTH` characters) that the
server echoes back. Replies and errors::

    {"type": "order.get.reply", "id": "c-42", "payload": {...}}
    {"type": "error", "id": "c-42",
     "error": {"code": 404, "reason": "ORDER_NOT_FOUND", "message": "...", "metadata": {}}}

(``id`` is omitted when the request had none.)

**Binary frames** carry the same three fields without a JSON envelope, so a payload can be raw
bytes (audio, images, protobuf)::

    offset 0        uint16 big-endian  T = length of type
    offset 2        type               T bytes, UTF-8
    offset 2+T      uint16 big-endian  I = length of the correlation id (0: no id)
    offset 4+T      id                 I bytes, UTF-8
    offset 4+T+I    payload            the rest of the frame

The payload is handed over as raw ``bytes`` when the handler's payload parameter is annotated
``bytes``; otherwise it is JSON (empty means ``null``). The server answers a binary frame with a
binary frame in the same format: a ``bytes`` reply is sent raw, anything else as JSON; an
error is type ``"error"`` with the error object as JSON payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from framework.errors import Error
from framework.validation import excerpt

__all__ = [
    "BAD_FRAME",
    "BAD_PAYLOAD",
    "ERROR_TYPE",
    "MAX_ID_LENGTH",
    "REPLY_SUFFIX",
    "SHUTTING_DOWN",
    "UNKNOWN_TYPE",
    "FrameError",
    "Incoming",
    "decode",
    "decode_binary",
    "decode_text",
    "dumps",
    "encode_binary",
    "encode_error",
    "encode_outbound",
    "encode_text",
]

#: The frame is not a valid envelope (not JSON, not an object, no ``type``, bad binary header).
BAD_FRAME = "BAD_FRAME"
#: No handler is registered for the message type on this path.
UNKNOWN_TYPE = "UNKNOWN_TYPE"
#: The payload does not validate against the handler's payload annotation.
BAD_PAYLOAD = "BAD_PAYLOAD"
#: The server is stopping and no longer dispatches new messages.
SHUTTING_DOWN = "SHUTTING_DOWN"
#: Type of error frames.
ERROR_TYPE = "error"
#: A reply's type is the request's type plus this suffix.
REPLY_SUFFIX = ".reply"

#: Longest correlation id accepted: it is echoed in every reply, so it must stay small.
MAX_ID_LENGTH = 256

_U16 = 0xFFFF


class FrameError(ValueError):
    """A frame that cannot be decoded into an envelope (reported as ``BAD_FRAME``)."""


@dataclass(slots=True)
class Incoming:
    """One decoded inbound message.

    Attributes:
        type: the message type, used to pick the handler.
        payload: the parsed JSON payload (text frames) or the raw payload bytes (binary frames).
        id: the correlation id, echoed in the reply; ``None`` when absent.
        binary: whether it arrived in a binary frame (the reply uses the same framing).
    """

    type: str
    payload: Any = None
    id: Any = None
    binary: bool = False


def _default(obj: Any) -> Any:
    # pydantic models (replies, pushed events) are the common non-native case; orjson already
    # handles dataclasses, datetimes, UUIDs and enums itself.
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as JSON bytes (pydantic models, dataclasses, datetimes supported)."""
    return orjson.dumps(obj, default=_default)


def decode_text(raw: str | bytes) -> Incoming:
    """Parse a JSON envelope; raise :class:`FrameError` when it is not one."""
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"frame is not valid JSON: {excerpt(exc)}") from None
    if type(envelope) is not dict:
        raise FrameError(f"envelope must be a JSON object, got {type(envelope).__name__}")
    kind = envelope.get("type")
    if type(kind) is not str or not kind:
        raise FrameError('envelope needs a non-empty string "type"')
    correlation = envelope.get("id")
    if correlation is not None and type(correlation) not in (str, int, float):
        raise FrameError('"id" must be a string or a number')
    if type(correlation) is str and len(correlation) > MAX_ID_LENGTH:
        raise FrameError(f'"id" must be at most {MAX_ID_LENGTH} characters')
    return Incoming(kind, envelope.get("payload"), correlation, False)


def decode_binary(raw: bytes) -> Incoming:
    """Split a binary frame into type, id and raw payload bytes (see the module docstring)."""
    size = len(raw)
    if size < 4:
        raise FrameError("binary frame shorter than its 4-byte header")
    type_len = int.from_bytes(raw[0:2], "big")
    id_at = 2 + type_len
    if type_len == 0 or id_at + 2 > size:
        raise FrameError("binary frame: bad type length")
    id_len = int.from_bytes(raw[id_at : id_at + 2], "big")
    payload_at = id_at + 2 + id_len
    if payload_at > size:
        raise FrameError("binary frame: bad id length")
    if id_len > MAX_ID_LENGTH:
        raise FrameError(f"binary frame: id longer than {MAX_ID_LENGTH} bytes")
    try:
        kind = raw[2:id_at].decode()
        correlation = raw[id_at + 2 : payload_at].decode() if id_len else None
    except UnicodeDecodeError:
        raise FrameError("binary frame: type/id are not UTF-8") from None
    return Incoming(kind, bytes(raw[payload_at:]), correlation, True)


def decode(raw: str | bytes) -> Incoming:
    """Decode a received frame: ``str`` (text frame) or ``bytes`` (binary frame)."""
    return decode_text(raw) if isinstance(raw, str) else decode_binary(raw)


def encode_text(kind: str, payload: Any = None, id: Any = None) -> bytes:
    """A JSON envelope ``{"type", "id", "payload"}`` (``id`` left out when ``None``)."""
    if id is None:
        return dumps({"type": kind, "payload": payload})
    return dumps({"type": kind, "id": id, "payload": payload})


def encode_binary(kind: str, payload: Any = None, id: str | None = None) -> bytes:
    """A binary frame; ``bytes``-like payloads are sent raw, anything else as JSON."""
    kind_b = kind.encode()
    id_b = id.encode() if id is not None else b""
    if len(kind_b) > _U16 or len(id_b) > _U16:
        raise ValueError("binary frame: type and id must each fit in 65535 bytes")
    if isinstance(payload, (bytes, bytearray, memoryview)):
        body = bytes(payload)
    else:
        body = b"" if payload is None else dumps(payload)
    return b"".join(
        (len(kind_b).to_bytes(2, "big"), kind_b, len(id_b).to_bytes(2, "big"), id_b, body)
    )


def encode_error(error: Error, id: Any = None, *, binary: bool = False) -> bytes:
    """An error frame for ``error`` in text or binary framing."""
    if binary:
        return encode_binary(ERROR_TYPE, error.to_dict(), None if id is None else str(id))
    if id is None:
        return dumps({"type": ERROR_TYPE, "error": error.to_dict()})
    return dumps({"type": ERROR_TYPE, "id": id, "error": error.to_dict()})


def encode_outbound(obj: Any, kind: str | None = None) -> tuple[bytes, bool]:
    """The frame for a server push: ``(data, is_text)``.

    With ``kind``, ``obj`` becomes the payload of a ``{"type": kind, "payload": obj}`` envelope.
    Without it, ``str`` goes out as a text frame and ``bytes`` as a binary frame unchanged,
    and anything else (dict, pydantic model, dataclass, ...) as a JSON text frame.
    """
    if kind is not None:
        return encode_text(kind, obj), True
    if isinstance(obj, str):
        return obj.encode(), True
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj), False
    return dumps(obj), True
