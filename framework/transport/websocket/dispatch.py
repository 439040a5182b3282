"""Serving one inbound frame: decode, pick the handler, run the middleware chain, reply.

Every failure is answered with an error frame and the connection stays up: an undecodable
frame gets ``BAD_FRAME``, an unknown type ``UNKNOWN_TYPE``, a payload that does not validate
``BAD_PAYLOAD``, a handler's :class:`~framework.errors.Error` its own code and reason, any
other exception a logged 500 ``INTERNAL_ERROR`` that does not leak internals. (Frames over
``max_message_size`` never get here: the protocol closes the connection with 1009.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from framework.errors import BadRequest, Error, InternalServer, ServiceUnavailable
from framework.middleware import INTERNAL_ERROR
from framework.middleware.core import Middleware
from framework.transport.context import Transport, current_transport
from framework.transport.websocket.envelope import (
    BAD_FRAME,
    SHUTTING_DOWN,
    UNKNOWN_TYPE,
    FrameError,
    Incoming,
    decode,
    encode_binary,
    encode_error,
    encode_text,
)
from framework.transport.websocket.handler import BoundHandler, Callback, bind_callback
from framework.transport.websocket.router import Route, WebSocketRouter
from framework.transport.websocket.session import Session
from framework.validation import excerpt

__all__ = ["KIND", "RouteTable", "compile_router", "dispatch", "refuse"]

#: ``Transport.kind`` of WebSocket messages.
KIND = "websocket"

_log = logging.getLogger("pykratos.websocket")


@dataclass(frozen=True, slots=True)
class RouteTable:
    """What serves one path: handlers by message type plus connect/disconnect callbacks."""

    handlers: Mapping[str, BoundHandler] = field(default_factory=dict)
    on_connect: tuple[Callback, ...] = ()
    on_disconnect: tuple[Callback, ...] = ()


def _table(scopes: tuple[Route, ...], middleware: Middleware) -> RouteTable:
    # Later scopes (the path's own Route) override earlier ones (router-wide handlers).
    sources: dict[str, Callable[..., Any]] = {}
    for scope in scopes:
        sources.update(scope.handlers)
    return RouteTable(
        handlers={kind: BoundHandler(kind, fn, middleware) for kind, fn in sources.items()},
        on_connect=tuple(
            bind_callback(fn, "connect") for s in scopes for fn in s.connect_callbacks
        ),
        on_disconnect=tuple(
            bind_callback(fn, "disconnect") for s in scopes for fn in s.disconnect_callbacks
        ),
    )


def compile_router(
    router: WebSocketRouter, middleware: Middleware
) -> tuple[dict[str, RouteTable], RouteTable | None]:
    """Bind every handler (signature and DI checks happen here, at start).

    Returns the table per declared path and the table for any path, which is ``None`` when
    paths were declared (undeclared paths are then refused).
    """
    tables = {path: _table((router, route), middleware) for path, route in router.routes.items()}
    return tables, (None if tables else _table((router,), middleware))


def _reply(session: Session, handler: BoundHandler, incoming: Incoming, reply: Any) -> None:
    if incoming.binary:
        rid = None if incoming.id is None else str(incoming.id)
        session.push(encode_binary(handler.reply_type, reply, rid), False)
    else:
        session.push(encode_text(handler.reply_type, reply, incoming.id), True)


def _error(session: Session, error: Error, incoming_id: Any, binary: bool) -> None:
    session.push(encode_error(error, incoming_id, binary=binary), not binary)


async def dispatch(session: Session, table: RouteTable, raw: str | bytes, endpoint: str) -> None:
    """Serve one frame received from ``session``."""
    binary = not isinstance(raw, str)
    try:
        incoming = decode(raw)
    except FrameError as exc:
        _error(session, BadRequest(BAD_FRAME, str(exc)), None, binary)
        return
    handler = table.handlers.get(incoming.type)
    if handler is None:
        _error(
            session,
            # The type is client input: echo a bounded excerpt, never the whole frame.
            BadRequest(UNKNOWN_TYPE, f"no handler for message type {excerpt(incoming.type)!r}"),
            incoming.id,
            binary,
        )
        return
    token = current_transport.set(
        Transport(KIND, incoming.type, session.headers, {}, endpoint, session)
    )
    try:
        reply = await handler.call(handler.decode(incoming.payload, binary))
        if reply is not None or incoming.id is not None:
            _reply(session, handler, incoming, reply)
    except Error as exc:
        _error(session, exc, incoming.id, binary)
    except Exception:
        # No recovery middleware caught it (or encoding the reply failed): log, answer 500.
        _log.exception(
            "websocket handler %s failed", handler.name, extra={"operation": incoming.type}
        )
        _error(session, InternalServer(INTERNAL_ERROR, "internal error"), incoming.id, binary)
    finally:
        current_transport.reset(token)


def refuse(session: Session, raw: str | bytes) -> None:
    """Answer a frame that arrived during the stop with a 503 ``SHUTTING_DOWN`` error."""
    binary = not isinstance(raw, str)
    try:
        incoming_id = decode(raw).id
    except FrameError:
        incoming_id = None
    _error(
        session, ServiceUnavailable(SHUTTING_DOWN, "server is shutting down"), incoming_id, binary
    )
