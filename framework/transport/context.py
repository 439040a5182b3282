"""The per-request transport context, readable from any handler through a contextvar.

Every server (HTTP, gRPC, WebSocket, brokers) sets a :class:`Transport` before running the
middleware chain, so middleware and business code can ask *what* is being served without
knowing *how*: ``kind`` ("http", "grpc", "websocket", "kafka", "rabbitmq", "memory"),
``operation`` (route template, full RPC name, topic, message type), the request headers and a
mutable mapping of reply headers that the server sends back where the transport allows it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Transport", "current_transport", "from_context", "transport_scope"]


@dataclass(slots=True)
class Transport:
    """What is being served right now.

    Attributes:
        kind: transport name, e.g. ``"http"`` or ``"kafka"``.
        operation: the selector key: HTTP route template (``"GET /v1/orders/{id}"``), gRPC full
            method (``"/order.v1.Order/GetOrder"``), broker topic, WebSocket message type.
        request_headers: incoming headers / metadata (case as received; HTTP is lower-cased).
        reply_headers: headers the handler wants sent back (HTTP headers, gRPC trailing
            metadata); transports without reply headers ignore them.
        endpoint: the server's endpoint URL.
        raw: the transport's own request object (starlette Request, grpc ServicerContext,
            broker Message, ...), for the rare handler that needs it.
    """

    kind: str
    operation: str
    request_headers: Mapping[str, str] = field(default_factory=dict)
    reply_headers: dict[str, str] = field(default_factory=dict)
    endpoint: str = ""
    raw: Any = None


current_transport: contextvars.ContextVar[Transport | None] = contextvars.ContextVar(
    "pykratos_transport", default=None
)


def from_context() -> Transport | None:
    """The transport of the request being handled, or ``None`` outside a request."""
    return current_transport.get()


@contextmanager
def transport_scope(transport: Transport) -> Iterator[Transport]:
    """Set ``transport`` as current for the duration of the block."""
    token = current_transport.set(transport)
    try:
        yield transport
    finally:
        current_transport.reset(token)
