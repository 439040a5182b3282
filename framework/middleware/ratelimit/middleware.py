"""The :func:`ratelimit` middleware: refuse calls over the limit before any handler work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from framework.errors import TooManyRequests
from framework.middleware.core import Handler, Middleware, declare_errors
from framework.middleware.ratelimit.bbr import BBR, Done
from framework.transport.context import current_transport

__all__ = ["RATELIMIT", "Limiter", "ratelimit"]

#: Reason of the 429 / RESOURCE_EXHAUSTED error a refused call gets (Kratos' reason too).
RATELIMIT = "RATELIMIT"

#: Server kinds whose calls are limited. A broker message refused would only be retried or
#: dead-lettered; consumers are bounded by their prefetch / worker count instead.
_LIMITED = frozenset({"http", "grpc", "websocket"})


class Limiter(Protocol):
    """What :func:`ratelimit` asks: ``allow()`` returns a falsy value to refuse the call,
    otherwise ``True`` or a ``done()`` callback to run when the call ends
    (:class:`~framework.middleware.ratelimit.TokenBucket`,
    :class:`~framework.middleware.ratelimit.BBR`)."""

    def allow(self) -> Done | bool | None:
        """Admit (truthy) or refuse (falsy) one call."""


def ratelimit(
    limiter: Limiter | None = None,
    *,
    per_operation: Callable[[str], Limiter] | None = None,
) -> Middleware:
    """Refuse calls the limiter does not admit with 429 / ``RESOURCE_EXHAUSTED`` ``RATELIMIT``.

    Args:
        limiter: one limiter shared by every call through this middleware; default a
            :class:`~framework.middleware.ratelimit.BBR` (adaptive, CPU-driven).
        per_operation: instead, a factory called once per operation (``Transport.operation``)
            for a limiter of its own, e.g. ``lambda op: TokenBucket(100, burst=20)``.

    Put it early in the chain (after ``tracing()``/``metrics()`` so refusals are counted):
    a refused call raises at once, before validation, decoding or the handler. To limit only
    some operations, wrap it in a selector
    (``selector(ratelimit(...)).path("POST /v1/orders").build()``). HTTP, gRPC and WebSocket
    calls are limited; broker messages pass through.
    """
    if limiter is not None and per_operation is not None:
        raise ValueError("give either a shared limiter or per_operation, not both")
    shared = limiter if limiter is not None or per_operation is not None else BBR()
    get_transport = current_transport.get

    def middleware(handler: Handler) -> Handler:
        limiters: dict[str, Limiter] = {}

        def _new(operation: str) -> Limiter:
            assert per_operation is not None  # shared is set otherwise
            made = limiters[operation] = per_operation(operation)
            return made

        async def run(request: Any) -> Any:
            transport = get_transport()
            if transport is None or transport.kind not in _LIMITED:
                return await handler(request)
            chosen = shared or limiters.get(transport.operation) or _new(transport.operation)
            admitted = chosen.allow()
            if not admitted:
                raise TooManyRequests(RATELIMIT, f"rate limit exceeded for {transport.operation}")
            if admitted is True:
                return await handler(request)
            try:
                return await handler(request)
            finally:
                admitted()

        return run

    return declare_errors(
        middleware,
        lambda kind, _: {429: f"{RATELIMIT}: over the rate limit; retry later"}
        if kind in _LIMITED
        else {},
    )
