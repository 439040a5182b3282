"""Record how an operation ended on its span: status codes, and errors with their reason.

Errors become the span's ``error.type`` (the framework :class:`~framework.errors.Error`'s
reason, e.g. ``ORDER_NOT_FOUND``; the exception type when there is no reason), plus
``pykratos.error.code`` / ``pykratos.error.reason`` and an ``exception`` event. Whether the
span's *status* turns ERROR follows the semantic conventions: a server (HTTP, gRPC, WebSocket)
failed only on a 5xx, since a 4xx is the caller's mistake; a consumer, producer or client
failed on any error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.errors import Error, from_exception
from framework.tracing.attributes import SERVER_KINDS
from framework.tracing.availability import TracingUnavailableError
from framework.transport.context import Transport

try:
    from opentelemetry.trace import Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise TracingUnavailableError.from_import_error("framework.tracing", exc) from exc

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = [
    "GRPC_STATUS_NUMBERS",
    "describe",
    "record_error",
    "record_server_failure",
    "record_server_reply",
]

#: gRPC status code name -> its number (``rpc.grpc.status_code`` is the number).
GRPC_STATUS_NUMBERS: dict[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def describe(error: Error) -> str:
    """``"404 ORDER_NOT_FOUND: order 7 not found"``: the span status description."""
    head = f"{error.code} {error.reason}" if error.reason else str(error.code)
    return f"{head}: {error.message}" if error.message else head


def record_error(span: Span, exc: BaseException, error: Error, *, failed: bool) -> None:
    """Put ``error`` on ``span``; set the ERROR status when the operation ``failed``."""
    span.record_exception(exc)
    if error.reason:
        error_type = error.reason
    elif isinstance(exc, Error):
        error_type = str(error.code)
    else:
        error_type = type(exc).__qualname__
    span.set_attribute("error.type", error_type)
    span.set_attribute("pykratos.error.code", error.code)
    if error.reason:
        span.set_attribute("pykratos.error.reason", error.reason)
    if failed:
        span.set_status(Status(StatusCode.ERROR, describe(error)))


def record_server_failure(span: Span, transport: Transport, exc: BaseException) -> None:
    """The handler raised ``exc``: record it as the transport will answer it."""
    error = from_exception(exc)
    kind = transport.kind
    if kind == "http":
        span.set_attribute("http.response.status_code", error.code)
    elif kind == "grpc":
        span.set_attribute("rpc.grpc.status_code", GRPC_STATUS_NUMBERS.get(error.grpc_status, 2))
    record_error(span, exc, error, failed=kind not in SERVER_KINDS or error.code >= 500)


def record_server_reply(span: Span, transport: Transport, reply: Any) -> None:
    """The handler returned ``reply``: record the status it carries."""
    kind = transport.kind
    if kind == "http":
        # A handler may return a Response itself, error statuses included.
        status = getattr(reply, "status_code", None)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
    elif kind == "grpc":
        span.set_attribute("rpc.grpc.status_code", 0)
