"""One middleware type for every transport.

A :data:`Handler` takes the decoded request (an HTTP request object, a protobuf message, a
broker payload, ...) and returns the reply; the transport context is read from
:func:`framework.transport.from_context`. A :data:`Middleware` wraps a handler into another
handler, exactly like go-kratos' ``middleware.Middleware``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

__all__ = ["Handler", "Middleware", "chain"]

Handler: TypeAlias = Callable[[Any], Awaitable[Any]]
Middleware: TypeAlias = Callable[[Handler], Handler]


def chain(*middlewares: Middleware | Iterable[Middleware]) -> Middleware:
    """Compose middlewares; the first one given is the outermost (runs first)."""
    flat: list[Middleware] = []
    for item in middlewares:
        if callable(item):
            flat.append(item)
        else:
            flat.extend(item)

    def wrap(handler: Handler) -> Handler:
        for middleware in reversed(flat):
            handler = middleware(handler)
        return handler

    return wrap
