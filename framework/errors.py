"""Structured errors shared by every transport.

An :class:`Error` carries an HTTP-style ``code``, a machine-readable ``reason``
(``ORDER_NOT_FOUND``), a human ``message`` and string ``metadata``.  Business code raises
them; the HTTP server renders them as ``{"code", "reason", "message", "metadata"}``, the
WebSocket server sends the same object in an error frame, and the gRPC server maps ``code`` to a
status code and puts ``reason``/``metadata`` in a ``google.rpc.ErrorInfo`` detail, so a client
of any transport sees the same reason. :func:`from_exception` turns anything (including a gRPC
``AioRpcError``) back into an Error.

Metadata is ``str -> str``, as in Kratos and as ``ErrorInfo.metadata`` (``map<string, string>``)
requires. Values of other types are converted once, when the error is built, by
:func:`metadata_text`: JSON types are JSON-encoded (``3`` -> ``"3"``, ``True`` -> ``"true"``,
``None`` -> ``"null"``, ``{"a": 1}`` -> ``'{"a":1}'``), anything else goes through ``str()``.
So ``NotFound("CART_NOT_FOUND", "...", attempts=3)`` answers ``"attempts": "3"`` over HTTP,
WebSocket and gRPC alike, and the error round-trips unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "PAYLOAD_TOO_LARGE",
    "UNKNOWN_REASON",
    "BadRequest",
    "ClientClosed",
    "Conflict",
    "Error",
    "Forbidden",
    "GatewayTimeout",
    "InternalServer",
    "NotFound",
    "NotImplemented_",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "from_exception",
    "grpc_code_to_http",
    "http_to_grpc_code",
    "is_reason",
    "metadata_text",
]

UNKNOWN_REASON = ""
#: Reason of the 413 for a request body or message over the server's size limit (HTTP
#: ``max_body_size``; gRPC ``max_receive_message_length``, read back by :func:`from_exception`).
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"

# HTTP status <-> gRPC status code name; the same table go-kratos uses.
_HTTP_TO_GRPC: dict[int, str] = {
    200: "OK",
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GRPC_TO_HTTP: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def _value_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float, list, tuple, dict)):
        # JSON, so that 3, true and null read the same from every client language; whatever a
        # container holds that JSON cannot encode falls back to its str().
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError):  # keys JSON cannot take, a circular container
            pass
    return str(value)


def metadata_text(metadata: Mapping[Any, object] | None) -> dict[str, str]:
    """``metadata`` as the ``str -> str`` map every transport sends.

    Strings are kept as they are; ``None``, booleans, numbers, lists and dicts are JSON-encoded
    (``3`` -> ``"3"``, ``False`` -> ``"false"``); any other value (an enum, a UUID, a datetime)
    becomes its ``str()``. Keys go through ``str()``.
    """
    if not metadata:
        return {}
    return {
        key if isinstance(key, str) else str(key): _value_text(value)
        for key, value in metadata.items()
    }


class Error(Exception):
    """An error with a transport-neutral code, a stable reason and metadata.

    ``code`` is an HTTP status (404, 500, ...); ``reason`` is the stable, upper-snake identifier
    clients branch on; ``message`` is for humans; ``metadata`` holds string key/values (values
    of other types are converted by :func:`metadata_text`, so every transport sends the same).
    """

    __slots__ = ("code", "message", "metadata", "reason")

    def __init__(
        self,
        code: int,
        reason: str = UNKNOWN_REASON,
        message: str = "",
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message or reason)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = metadata_text(metadata)

    def __repr__(self) -> str:
        return (
            f"Error(code={self.code}, reason={self.reason!r}, message={self.message!r}, "
            f"metadata={self.metadata!r})"
        )

    def __str__(self) -> str:
        return f"error: code = {self.code} reason = {self.reason} message = {self.message}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Error) and (self.code, self.reason) == (other.code, other.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))

    def with_metadata(self, **metadata: object) -> Error:
        """Return a copy with ``metadata`` merged in (values converted by :func:`metadata_text`)."""
        return Error(self.code, self.reason, self.message, {**self.metadata, **metadata})

    def to_dict(self) -> dict[str, Any]:
        """The JSON body an HTTP client receives."""
        return {
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
            # Converted again: code may have put a non-string value in the dict after __init__.
            "metadata": metadata_text(self.metadata),
        }

    @property
    def grpc_status(self) -> str:
        """Name of the ``grpc.StatusCode`` this error maps to (``"NOT_FOUND"``)."""
        return http_to_grpc_code(self.code)


def http_to_grpc_code(code: int) -> str:
    """Map an HTTP status to the name of a gRPC status code (unknown 4xx/5xx -> UNKNOWN)."""
    return _HTTP_TO_GRPC.get(code, "UNKNOWN")


def grpc_code_to_http(name: str) -> int:
    """Map a gRPC status code name (``"NOT_FOUND"``) to an HTTP status."""
    return _GRPC_TO_HTTP.get(name.upper(), 500)


def BadRequest(reason: str, message: str = "", **metadata: object) -> Error:
    """400 / INVALID_ARGUMENT."""
    return Error(400, reason, message, metadata)


def Unauthorized(reason: str, message: str = "", **metadata: object) -> Error:
    """401 / UNAUTHENTICATED."""
    return Error(401, reason, message, metadata)


def Forbidden(reason: str, message: str = "", **metadata: object) -> Error:
    """403 / PERMISSION_DENIED."""
    return Error(403, reason, message, metadata)


def NotFound(reason: str, message: str = "", **metadata: object) -> Error:
    """404 / NOT_FOUND."""
    return Error(404, reason, message, metadata)


def Conflict(reason: str, message: str = "", **metadata: object) -> Error:
    """409 / ABORTED."""
    return Error(409, reason, message, metadata)


def TooManyRequests(reason: str, message: str = "", **metadata: object) -> Error:
    """429 / RESOURCE_EXHAUSTED."""
    return Error(429, reason, message, metadata)


def ClientClosed(reason: str, message: str = "", **metadata: object) -> Error:
    """499 / CANCELLED."""
    return Error(499, reason, message, metadata)


def InternalServer(reason: str, message: str = "", **metadata: object) -> Error:
    """500 / INTERNAL."""
    return Error(500, reason, message, metadata)


def NotImplemented_(reason: str, message: str = "", **metadata: object) -> Error:
    """501 / UNIMPLEMENTED (trailing underscore: ``NotImplemented`` is a builtin)."""
    return Error(501, reason, message, metadata)


def ServiceUnavailable(reason: str, message: str = "", **metadata: object) -> Error:
    """503 / UNAVAILABLE."""
    return Error(503, reason, message, metadata)


def GatewayTimeout(reason: str, message: str = "", **metadata: object) -> Error:
    """504 / DEADLINE_EXCEEDED."""
    return Error(504, reason, message, metadata)


def is_reason(exc: BaseException | None, reason: str) -> bool:
    """True when ``exc`` converts to an :class:`Error` with this ``reason``."""
    return exc is not None and from_exception(exc).reason == reason


def from_exception(exc: BaseException) -> Error:
    """Convert any exception into an :class:`Error`.

    - an :class:`Error` is returned as is;
    - a gRPC ``AioRpcError``/``RpcError`` is decoded: the status code maps back to HTTP and the
      ``google.rpc.ErrorInfo`` detail (written by our gRPC server) restores reason and metadata;
      a request the server's grpc core refused as too large becomes 413 ``PAYLOAD_TOO_LARGE``;
    - anything else becomes 500 with an empty reason; its text is kept as the message.
    """
    if isinstance(exc, Error):
        return exc
    decoded = _from_grpc(exc)
    if decoded is not None:
        return decoded
    if isinstance(exc, TimeoutError):
        return GatewayTimeout("TIMEOUT", str(exc) or "deadline exceeded")
    return Error(500, UNKNOWN_REASON, str(exc) or type(exc).__name__)


def _from_grpc(exc: BaseException) -> Error | None:
    code_fn = getattr(exc, "code", None)
    if not callable(code_fn):
        return None
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpc extra not installed
        return None
    if not isinstance(exc, grpc.RpcError):
        return None
    status = code_fn()
    name = getattr(status, "name", "UNKNOWN")
    details_fn = getattr(exc, "details", None)
    message = details_fn() if callable(details_fn) else ""
    error = Error(grpc_code_to_http(name), UNKNOWN_REASON, message or "")
    info = _error_info_from_trailers(exc)
    if info is not None:
        error.reason, error.metadata = info
    elif name == "RESOURCE_EXHAUSTED" and (message or "").startswith(_SERVER_TOO_LARGE):
        # The server's grpc core refused the request message before any Python code ran, so
        # no ErrorInfo was attached; this is its fixed text for max_receive_message_length.
        error.code, error.reason = 413, PAYLOAD_TOO_LARGE
    return error


_SERVER_TOO_LARGE = "SERVER: Received message larger than max"


def _error_info_from_trailers(exc: Any) -> tuple[str, dict[str, str]] | None:
    trailers_fn = getattr(exc, "trailing_metadata", None)
    if not callable(trailers_fn):
        return None
    for key, value in trailers_fn() or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            from google.rpc import error_details_pb2, status_pb2
        except ImportError:  # pragma: no cover - grpc extra not installed
            return None
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason, dict(info.metadata)
    return None
