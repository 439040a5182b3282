"""Where WebSocket handlers are declared: message types, connect/disconnect callbacks, paths.

Decorators only record the function (it stays a plain function a unit test can call). The
server reads the router at start. Handlers registered on the router itself serve every path;
handlers on a :class:`Route` serve that path only and win over router-level ones::

    ws = WebSocketRouter()                 # or directly on a WebSocketServer

    @ws.on("ping")                         # every path
    async def ping() -> str: return "pong"

    orders = ws.route("/ws/orders")        # exact path (the query string is ignored)

    @orders.on_connect
    async def joined(session: Session) -> None:
        session.join(f"orders:{session.principal}")

    @orders.on("order.get")
    async def get_order(query: OrderQuery, session: Session) -> Order: ...

When no route is declared, every path is accepted; once one is, other paths get HTTP 404 at
the handshake.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from framework.transport.websocket.handler import remember_namespace

__all__ = ["Route", "WebSocketRouter"]

F = TypeVar("F", bound=Callable[..., Any])


_PACKAGE = __name__.rpartition(".")[0]


def _caller_namespace() -> dict[str, Any]:
    """Locals of the user's scope declaring a handler (the first frame outside this package)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(_PACKAGE):
        frame = frame.f_back
    return frame.f_locals


class Route:
    """Handlers and callbacks for one path (or, on a router, for every path)."""

    def __init__(self, path: str | None = None) -> None:
        if path is not None and not path.startswith("/"):
            raise ValueError(f"websocket route path must start with '/', got {path!r}")
        self.path = path
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.connect_callbacks: list[Callable[..., Any]] = []
        self.disconnect_callbacks: list[Callable[..., Any]] = []
        #: Message types the server pushes on this path (declared with :meth:`pushes`).
        self.pushed: dict[str, tuple[Any, str]] = {}

    def on(self, type: str) -> Callable[[F], F]:
        """Register the handler for messages of ``type``."""
        if not type:
            raise ValueError("message type must be a non-empty string")
        localns = _caller_namespace()

        def register(fn: F) -> F:
            if type in self.handlers:
                where = f"on {self.path}" if self.path else "for every path"
                raise ValueError(
                    f"websocket message type {type!r} already has a handler {where}: "
                    f"{getattr(self.handlers[type], '__qualname__', self.handlers[type])!r}"
                )
            self.handlers[type] = fn
            remember_namespace(fn, localns)
            return fn

        return register

    def pushes(self, type: str, payload_type: Any, *, description: str = "") -> None:
        """Declare that the server pushes ``type`` messages with ``payload_type`` payloads on
        this path (``server.send_to_room(..., type=type)``): a declaration for the AsyncAPI
        document, nothing more."""
        if not type:
            raise ValueError("message type must be a non-empty string")
        self.pushed[type] = (payload_type, description)

    def on_connect(self, fn: F) -> F:
        """Call ``fn(session)`` once a client connected, before its first message is read.

        Raising :class:`framework.errors.Error` refuses the client: the connection is closed
        with code 1008 and the error's reason.
        """
        self.connect_callbacks.append(fn)
        remember_namespace(fn, _caller_namespace())
        return fn

    def on_disconnect(self, fn: F) -> F:
        """Call ``fn(session)`` after the client's connection is gone."""
        self.disconnect_callbacks.append(fn)
        remember_namespace(fn, _caller_namespace())
        return fn


class WebSocketRouter(Route):
    """A set of WebSocket handlers, declared in the service layer and mounted on a server
    with :meth:`WebSocketServer.include_router`."""

    def __init__(self) -> None:
        super().__init__(None)
        self.routes: dict[str, Route] = {}

    def route(self, path: str) -> Route:
        """The :class:`Route` for ``path``, created on first use."""
        route = self.routes.get(path)
        if route is None:
            route = self.routes[path] = Route(path)
        return route

    def include(self, other: WebSocketRouter) -> None:
        """Merge ``other``'s handlers, callbacks and routes into this router."""
        _merge(self, other)
        for path, route in other.routes.items():
            _merge(self.route(path), route)


def _merge(into: Route, source: Route) -> None:
    for kind, fn in source.handlers.items():
        into.on(kind)(fn)
    into.pushed.update(source.pushed)
    into.connect_callbacks.extend(source.connect_callbacks)
    into.disconnect_callbacks.extend(source.disconnect_callbacks)
