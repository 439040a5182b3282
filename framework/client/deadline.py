"""Timeout and deadline propagation (client middleware).

A call's timeout is the smaller of the client's own ``timeout`` and what is left of the
deadline of the request being served: a gRPC call's deadline (``ServicerContext
.time_remaining()``, which grpc reads from the caller's ``grpc-timeout``), or an HTTP
request's :data:`TIMEOUT_HEADER` (seconds), which the HTTP client sends. So a chain of calls
never outlives the first caller's deadline; with nothing left, the call fails at once with
504 ``DEADLINE_EXCEEDED`` instead of being sent.
"""

from __future__ import annotations

import time
from typing import Any

from framework.client.context import client_context
from framework.errors import GatewayTimeout
from framework.middleware.core import Handler, Middleware
from framework.transport.context import from_context

__all__ = ["DEADLINE_EXCEEDED", "TIMEOUT_HEADER", "deadline", "remaining"]

DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
#: Header carrying an HTTP call's timeout in seconds (decimal), sent by the HTTP client.
TIMEOUT_HEADER = "x-request-timeout"


def remaining() -> float | None:
    """Seconds left of the deadline of the request being served, if it has one."""
    transport = from_context()
    if transport is None:
        return None
    raw = transport.raw
    time_remaining = getattr(raw, "time_remaining", None) if transport.kind == "grpc" else None
    if callable(time_remaining):
        left = time_remaining()
        return float(left) if left is not None else None
    value = transport.request_headers.get(TIMEOUT_HEADER)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    # The header counts from when the request arrived; the transport context does not say
    # when that was, so the budget is taken as whole (a few ms generous).
    return seconds if seconds >= 0 else None


def deadline(timeout: float | None = None) -> Middleware:
    """Bound each call by ``timeout`` seconds (``None``: only by the propagated deadline)."""
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            call = client_context()
            if call is not None:
                budget = call.timeout if call.timeout is not None else timeout
                left = remaining()
                if left is not None:
                    if left <= 0:
                        raise GatewayTimeout(DEADLINE_EXCEEDED, "no time left for the call")
                    budget = left if budget is None else min(budget, left)
                call.timeout = budget
                if budget is not None:
                    # Absolute, so retries share the budget rather than each getting it whole.
                    call.deadline = time.monotonic() + budget
            return await handler(request)

        return run

    return middleware
