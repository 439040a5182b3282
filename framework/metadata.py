"""Metadata propagation across hops (Kratos' ``middleware/metadata``).

Two kinds of entries, told apart by their key prefix (lower case, as HTTP/2 and gRPC send
keys):

- ``x-md-global-*`` travels across **every** hop: a service that received it sends it on with
  each gRPC/HTTP call it makes (:func:`client_metadata` middleware) and each message it
  publishes (:class:`~framework.broker.Publisher` adds it to the headers), and so on down the
  chain;
- ``x-md-local-*`` travels **one** hop: the callee reads it, and it is not sent further.

On the server side :func:`server_metadata` (a middleware for any transport) keeps the
request's entries, readable with :func:`incoming` (they are in the transport context's
``request_headers`` too). To send entries of your own, wrap the call in :func:`outgoing`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from framework.middleware.core import Handler, Middleware
from framework.transport.context import from_context

__all__ = [
    "GLOBAL_PREFIX",
    "LOCAL_PREFIX",
    "client_metadata",
    "incoming",
    "outgoing",
    "propagated",
    "server_metadata",
]

GLOBAL_PREFIX = "x-md-global-"
LOCAL_PREFIX = "x-md-local-"
_PREFIXES = (GLOBAL_PREFIX, LOCAL_PREFIX)

_EMPTY: Mapping[str, str] = MappingProxyType({})
_incoming: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "pykratos_md_incoming", default=_EMPTY
)
_outgoing: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "pykratos_md_outgoing", default=_EMPTY
)


def _select(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith(_PREFIXES)}


def incoming() -> Mapping[str, str]:
    """The metadata entries of the request being handled (global and local), keys in lower
    case; empty outside a request or without :func:`server_metadata`."""
    return _incoming.get()


def propagated() -> dict[str, str]:
    """What this service sends on with an outgoing call or message: the incoming *global*
    entries, then the entries set with :func:`outgoing` (which win)."""
    result = {k: v for k, v in _incoming.get().items() if k.startswith(GLOBAL_PREFIX)}
    result.update(_outgoing.get())
    return result


@contextmanager
def outgoing(entries: Mapping[str, str]) -> Iterator[None]:
    """Send ``entries`` with every call and message made inside the block.

    Keys must start with ``x-md-global-`` or ``x-md-local-``. Raises ``ValueError`` otherwise.
    """
    lowered = {k.lower(): v for k, v in entries.items()}
    wrong = [k for k in lowered if not k.startswith(_PREFIXES)]
    if wrong:
        raise ValueError(f"metadata keys must start with {' or '.join(_PREFIXES)}: {wrong}")
    token = _outgoing.set({**_outgoing.get(), **lowered})
    try:
        yield
    finally:
        _outgoing.reset(token)


def server_metadata() -> Middleware:
    """Server middleware: keep the request's ``x-md-*`` entries for :func:`incoming` and for
    propagation by clients and publishers called from the handler."""

    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            transport = from_context()
            entries = _select(transport.request_headers) if transport is not None else {}
            token = _incoming.set(entries)
            try:
                return await handler(request)
            finally:
                _incoming.reset(token)

        return run

    return middleware


def client_metadata(constants: Mapping[str, str] | None = None) -> Middleware:
    """Client middleware: put ``constants``, then :func:`propagated` entries, in the call's
    outgoing headers (:func:`framework.client.client_context`)."""
    fixed = {k.lower(): v for k, v in (constants or {}).items()}

    def middleware(handler: Handler) -> Handler:
        from framework.client.context import client_context

        async def run(request: Any) -> Any:
            call = client_context()
            if call is not None:
                entries = {**fixed, **propagated()}
                if entries:
                    call.request_headers.update(entries)
            return await handler(request)

        return run

    return middleware
