"""One middleware type for every transport.

A :data:`Handler` takes the decoded request (an HTTP request object, a protobuf message, a
broker payload, ...) and returns the reply; the transport context is read from
:func:`framework.transport.from_context`. A :data:`Middleware` wraps a handler into another
handler, exactly like go-kratos' ``middleware.Middleware``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeAlias

__all__ = [
    "ErrorDeclaration",
    "Handler",
    "Middleware",
    "chain",
    "declare_errors",
    "declared_errors",
]

Handler: TypeAlias = Callable[[Any], Awaitable[Any]]
Middleware: TypeAlias = Callable[[Handler], Handler]

#: What a middleware says it may answer instead of the handler: ``{status: description}``
#: (``{429: "RATELIMIT: ..."}``), or a function of ``(kind, operation)`` giving that map for
#: one operation (a selector answers only for the operations it selects).
ErrorDeclaration: TypeAlias = Mapping[int, str] | Callable[[str, str], Mapping[int, str]]

_ERRORS_ATTRIBUTE = "pykratos_errors"


def declare_errors(middleware: Middleware, errors: ErrorDeclaration) -> Middleware:
    """Record on ``middleware`` the error statuses it can answer; returns ``middleware``.

    Servers that publish a description of their operations read it back with
    :func:`declared_errors` (the HTTP server's OpenAPI document lists these statuses with the
    framework's error body), so a guard such as a rate limit shows up in the contract exactly
    where it runs.
    """
    setattr(middleware, _ERRORS_ATTRIBUTE, errors)
    return middleware


def declared_errors(
    middlewares: Iterable[Middleware | Iterable[Middleware]], kind: str, operation: str
) -> dict[int, str]:
    """The statuses (with a description) that ``middlewares`` declare for one operation
    (``kind`` ``"http"``, ``operation`` ``"GET /v1/orders/{order_id}"``); the first
    description given for a status wins. Middleware that declares nothing adds nothing."""
    found: dict[int, str] = {}
    for item in middlewares:
        for middleware in (item,) if callable(item) else item:
            declared = getattr(middleware, _ERRORS_ATTRIBUTE, None)
            if callable(declared):
                declared = declared(kind, operation)
            for status, description in (declared or {}).items():
                found.setdefault(status, description)
    return found


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
