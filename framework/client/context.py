"""The client-side transport context: what the call being made is, readable by client
middleware (Kratos' ``transport.FromClientContext``).

Kept apart from the server's :func:`framework.transport.from_context`, so a handler that makes
a call still sees its own request there.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientCall", "client_context"]


@dataclass(slots=True)
class ClientCall:
    """The call being made.

    Attributes:
        kind: ``"grpc"`` or ``"http"``.
        operation: the gRPC full method (``/order.v1.Order/GetOrder``) or ``"GET /v1/orders"``
            (the request path; the client does not know the server's route template).
        request_headers: outgoing metadata / headers; middleware adds to it.
        reply_headers: the HTTP response headers (gRPC: left empty).
        timeout: seconds the call may take; ``None`` for no deadline.
        deadline: ``time.monotonic()`` by which the call (every attempt) must end, set by the
            :func:`~framework.client.deadline.deadline` middleware from ``timeout``.
        endpoint: ``host:port`` of the instance the balancer picked for the last attempt.
        service: the target's service name (or its address for a direct target).
        failed: addresses whose attempt failed on the server side: a retry avoids them while
            other nodes remain.
    """

    kind: str
    operation: str
    request_headers: dict[str, str] = field(default_factory=dict)
    reply_headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    deadline: float | None = None
    endpoint: str = ""
    service: str = ""
    raw: Any = None
    failed: set[str] | None = None

    def time_left(self) -> float | None:
        """Seconds this attempt may take: to the deadline if set, else ``timeout``."""
        if self.deadline is None:
            return self.timeout
        return max(self.deadline - time.monotonic(), 0.0)


current_call: contextvars.ContextVar[ClientCall | None] = contextvars.ContextVar(
    "pykratos_client_call", default=None
)


def client_context() -> ClientCall | None:
    """The :class:`ClientCall` being made, inside client middleware; else ``None``."""
    return current_call.get()
