"""The WebSocket :class:`~framework.transport.Server`, built on ``websockets``' asyncio server.

Lifecycle of a connection: handshake (route by path, origin check, ``authenticate``) -> a
:class:`Session` is registered and its connect callbacks run -> frames are read and served
one at a time, in order (see :mod:`~framework.transport.websocket.dispatch`) -> on disconnect
the session leaves its rooms and the disconnect callbacks run.

Graceful stop: stop listening (new handshakes get 503) -> frames that arrive now get a
``SHUTTING_DOWN`` error -> wait for handlers in flight -> flush every session's queue and
close it with 1001 (going away) -> abort whatever is left when the timeout runs out.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from websockets.asyncio.server import Server as _WSServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from framework.errors import Error, NotFound, ServiceUnavailable
from framework.middleware.core import Middleware, chain
from framework.observer import current_observer
from framework.transport.address import host_port
from framework.transport.tls import ServerTls, TlsOptions
from framework.transport.websocket.connlog import ConnectionLog, peer_of
from framework.transport.websocket.dispatch import RouteTable, compile_router, dispatch, refuse
from framework.transport.websocket.envelope import SHUTTING_DOWN, encode_outbound
from framework.transport.websocket.handshake import (
    ROUTE_NOT_FOUND,
    Authenticate,
    Handshake,
    OriginRule,
    authenticate_handshake,
    check_origin,
    reject,
)
from framework.transport.websocket.idle import IdleWatch
from framework.transport.websocket.registry import SessionRegistry
from framework.transport.websocket.router import Route, WebSocketRouter
from framework.transport.websocket.session import Outgoing, Session, SlowClientPolicy
from framework.validation import excerpt

__all__ = [
    "GOING_AWAY",
    "IDLE_CLOSE_CODE",
    "POLICY_VIOLATION",
    "TOO_MANY_CONNECTIONS",
    "WebSocketServer",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Close code sent to every client on graceful stop.
GOING_AWAY = 1001
#: Close code for a client silent for longer than ``idle_timeout``.
IDLE_CLOSE_CODE = 1000
#: Close code when a connect callback refuses the client.
POLICY_VIOLATION = 1008
#: Reason of the 503 refusing a handshake beyond ``max_connections``.
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
#: Close code websockets sends for a message over ``max_message_size``.
MESSAGE_TOO_BIG = 1009

_log = logging.getLogger("pykratos.websocket")


class WebSocketServer:
    """A WebSocket server: typed message handlers, rooms, fan-out, graceful stop.

    Args:
        host, port: where to listen; port 0 picks a free port (see :attr:`endpoint`).
        middlewares: the framework middleware chain, run around every message handler with
            ``Transport(kind="websocket", operation=<message type>, raw=<Session>)``.
        name: server name (logs, App errors).
        max_message_size: largest inbound message in bytes; a larger one closes the
            connection with 1009 (message too big).
        ping_interval, ping_timeout: keepalive pings (seconds; ``None`` disables).
        idle_timeout: close (1000, "idle timeout") a client that sent no message for this
            many seconds; ``None`` disables. Keepalive pongs do not count as activity.
        send_queue_size: outbound frames queued per client before the slow-client policy.
        slow_client_policy: ``"drop_oldest"`` or ``"disconnect"`` (close 1013); see
            :mod:`~framework.transport.websocket.session`.
        write_limit: bytes buffered in a client's transport before frames are queued instead.
        close_timeout: seconds to wait for a client to complete a close handshake.
        allowed_origins: accepted ``Origin`` values (strings, compiled patterns, ``None`` for
            "no Origin header"); ``None`` disables the check. Others get HTTP 403.
        authenticate: handshake hook returning the principal; see
            :mod:`~framework.transport.websocket.handshake`.
        compression: ``"deflate"`` to negotiate permessage-deflate; off by default because
            it costs a compression per client on every fan-out.
        tls: serve ``wss://`` (optionally mutual TLS); files reloaded when they change
            (:mod:`framework.transport.tls`).
        max_connections: open connections allowed at once; a handshake beyond is refused
            with HTTP 503 ``TOO_MANY_CONNECTIONS`` before authentication. ``None``: no limit.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        middlewares: Iterable[Middleware] = (),
        name: str = "ws",
        max_message_size: int = 1024 * 1024,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        idle_timeout: float | None = None,
        send_queue_size: int = 1024,
        slow_client_policy: SlowClientPolicy = "drop_oldest",
        write_limit: int = 64 * 1024,
        close_timeout: float = 10.0,
        allowed_origins: Sequence[OriginRule] | None = None,
        authenticate: Authenticate | None = None,
        compression: str | None = None,
        tls: ServerTls | TlsOptions | None = None,
        max_connections: int | None = None,
    ) -> None:
        self.tls = ServerTls(tls) if isinstance(tls, TlsOptions) else tls
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.max_connections = max_connections
        if slow_client_policy not in ("drop_oldest", "disconnect"):
            raise ValueError(
                f"slow_client_policy must be 'drop_oldest' or 'disconnect', "
                f"got {slow_client_policy!r}"
            )
        if send_queue_size < 1:
            raise ValueError(f"send_queue_size must be >= 1, got {send_queue_size}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        self.host = host
        self.port = port
        self.name = name
        self.router = WebSocketRouter()
        self._middleware = chain(*middlewares)
        self._max_message_size = max_message_size
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._idle_timeout = idle_timeout
        self._send_queue_size = send_queue_size
        self._policy: SlowClientPolicy = slow_client_policy
        self._write_limit = write_limit
        self._close_timeout = close_timeout
        self._allowed_origins = None if allowed_origins is None else tuple(allowed_origins)
        self._authenticate = authenticate
        self._compression = compression
        self._registry = SessionRegistry()
        self._tables: dict[str, RouteTable] = {}
        self._any_path: RouteTable | None = None
        self._accepted: weakref.WeakKeyDictionary[
            ServerConnection, tuple[Handshake, RouteTable, Any]
        ] = weakref.WeakKeyDictionary()
        self._server: _WSServer | None = None
        self._endpoint = ""
        self._stopping = False  # intake stopped: new handshakes and messages are refused
        self._draining = False
        self._inflight = 0
        self._inflight_done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- registration (delegates to the router; handlers are bound at start) --------------

    def _check_not_started(self, what: str) -> None:
        if self._server is not None:
            raise RuntimeError(
                f"{what} must be called before websocket server {self.name!r} starts"
            )

    def on(self, type: str) -> Callable[[F], F]:
        """Register the handler for messages of ``type`` on every path."""
        self._check_not_started("on()")
        return self.router.on(type)

    def on_connect(self, fn: F) -> F:
        """Call ``fn(session)`` when a client connects (every path)."""
        self._check_not_started("on_connect()")
        return self.router.on_connect(fn)

    def on_disconnect(self, fn: F) -> F:
        """Call ``fn(session)`` when a client is gone (every path)."""
        self._check_not_started("on_disconnect()")
        return self.router.on_disconnect(fn)

    def route(self, path: str) -> Route:
        """Handlers for one path (see :class:`~framework.transport.websocket.router.Route`)."""
        self._check_not_started("route()")
        return self.router.route(path)

    def include_router(self, router: WebSocketRouter) -> None:
        """Mount the handlers of a router declared elsewhere (the service layer)."""
        self._check_not_started("include_router()")
        self.router.include(router)

    # -- Server protocol -----------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``ws://host:port`` once started (port 0 resolved); empty before."""
        return self._endpoint

    @property
    def sessions(self) -> Mapping[str, Session]:
        """A snapshot of connected sessions by id."""
        return {session.id: session for session in self._registry}

    def session(self, session_id: str) -> Session | None:
        """The connected session with this id, or ``None``."""
        return self._registry.get(session_id)

    def rooms(self) -> dict[str, int]:
        """Room name -> member count."""
        return self._registry.rooms()

    async def start(self) -> None:
        """Bind the handlers (failing on a bad signature or unwired ``Provide``), then listen.

        Returns once the socket is bound and accepting.
        """
        if self._server is not None:
            raise RuntimeError(f"websocket server {self.name!r} already started")
        self._tables, self._any_path = compile_router(self.router, self._middleware)
        self._stopping = False
        self._server = await serve(
            self._serve_connection,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=self._compression,
            max_size=self._max_message_size,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=self._close_timeout,
            write_limit=self._write_limit,
            server_header=None,
            ssl=self.tls.ssl_context() if self.tls is not None else None,
            # Log lines that name the peer, path and close code, not the connection object.
            logger=ConnectionLog(_log, self.name),
        )
        port = self._server.sockets[0].getsockname()[1]
        scheme = "wss" if self.tls is not None else "ws"
        self._endpoint = f"{scheme}://{host_port(self.host, port)}"
        if self.tls is not None:
            self.tls.start_watching()
        _log.info("websocket server %s listening on %s", self.name, self._endpoint)

    async def stop_intake(self) -> None:
        """Stop listening (handshakes get 503) and refuse new messages on open sessions (an
        error frame); handlers in flight go on, :meth:`stop` drains them. Idempotent."""
        server = self._server
        if server is None or self._stopping:
            return
        self._stopping = True
        server.close(close_connections=False)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, finish handlers in flight, flush queues, close 1001, all within
        ``timeout`` seconds; connections still open then are aborted."""
        server = self._server
        if server is None or self._draining:
            return
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        await self.stop_intake()
        try:
            async with asyncio.timeout_at(deadline):
                if self._inflight:
                    self._inflight_done.clear()
                    await self._inflight_done.wait()
                closes = [
                    asyncio.create_task(
                        s.close(GOING_AWAY, "server shutting down", drain_timeout=None)
                    )
                    for s in self._registry
                ]
                if closes:
                    await asyncio.gather(*closes, return_exceptions=True)
                await server.wait_closed()
        except TimeoutError:
            _log.warning(
                "websocket server %s: stop timeout (%.1fs): aborting %d connection(s)",
                self.name,
                timeout,
                len(self._registry),
            )
            for session in self._registry:
                session.connection.transport.abort()
            for task in tuple(self._tasks):
                task.cancel()
            # Aborted transports end their handlers at once; this only lets them unwind.
            try:
                await asyncio.wait_for(asyncio.shield(server.wait_closed()), 1.0)
            except TimeoutError:
                _log.error("websocket server %s: handlers still running after abort", self.name)
        self._server = None
        self._draining = False
        if self.tls is not None:
            await self.tls.stop_watching()
        _log.info("websocket server %s stopped", self.name)

    # -- sending -------------------------------------------------------------------------

    async def send(self, session_id: str, obj: Any, *, type: str | None = None) -> bool:
        """Send ``obj`` to one session (see :meth:`Session.send`); False if not connected."""
        session = self._registry.get(session_id)
        return False if session is None else await session.send(obj, type=type)

    async def send_to_room(self, room: str, obj: Any, *, type: str | None = None) -> int:
        """Send ``obj`` to every member of ``room``; returns how many sessions took it.

        The frame is encoded once and handed to each session without waiting for any socket.
        """
        members = self._registry.members(room)
        if not members:
            return 0
        frame = Outgoing(*encode_outbound(obj, type))
        return sum(1 for session in members if session.push_frame(frame))

    async def broadcast(self, obj: Any, *, type: str | None = None) -> int:
        """Send ``obj`` to every connected session; returns how many took it."""
        frame = Outgoing(*encode_outbound(obj, type))
        return sum(1 for session in self._registry if session.push_frame(frame))

    # -- connection handling -------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        handshake = Handshake.from_request(request, connection.remote_address)
        if self._stopping:
            return reject(ServiceUnavailable(SHUTTING_DOWN, "server is shutting down"))
        limit = self.max_connections
        if limit is not None and len(self._registry) + len(self._accepted) >= limit:
            return reject(
                ServiceUnavailable(TOO_MANY_CONNECTIONS, f"at most {limit} connections")
            )
        table = self._tables.get(handshake.path, self._any_path)
        if table is None:
            path = excerpt(handshake.path)
            return reject(NotFound(ROUTE_NOT_FOUND, f"no websocket route {path!r}"))
        if self._allowed_origins is not None:
            refused = check_origin(handshake, self._allowed_origins)
            if refused is not None:
                return reject(refused)
        principal = None
        if self._authenticate is not None:
            try:
                principal = await authenticate_handshake(self._authenticate, handshake)
            except Error as exc:
                return reject(exc)
        self._accepted[connection] = (handshake, table, principal)
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        accepted = self._accepted.pop(connection, None)
        if accepted is None:  # pragma: no cover - process_request always records it
            return
        handshake, table, principal = accepted
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        session = Session(
            uuid.uuid4().hex,
            handshake.path,
            connection,
            self._registry,
            principal=principal,
            headers=handshake.headers,
            query=handshake.query,
            send_queue_size=self._send_queue_size,
            slow_client_policy=self._policy,
            write_limit=self._write_limit,
            close_timeout=self._close_timeout,
        )
        self._registry.add(session)
        observer = current_observer()  # the same one reports the close
        if observer is not None:
            observer.session_changed("websocket", 1)
        session.start()
        idle = (
            IdleWatch(session, self._idle_timeout, IDLE_CLOSE_CODE) if self._idle_timeout else None
        )
        try:
            if await self._connected(session, table):
                await self._read(session, table)
        finally:
            if idle is not None:
                idle.cancel()
            self._registry.remove(session)
            if observer is not None:
                observer.session_changed("websocket", -1)
            session.detach()
            for callback in table.on_disconnect:
                try:
                    await callback(session)
                except Exception:
                    _log.exception("websocket disconnect callback failed for %s", session.id)
            if task is not None:
                self._tasks.discard(task)

    async def _connected(self, session: Session, table: RouteTable) -> bool:
        try:
            for callback in table.on_connect:
                await callback(session)
        except Error as exc:
            await session.close(POLICY_VIOLATION, exc.reason or exc.message, drain_timeout=0)
            return False
        except Exception:
            _log.exception("websocket connect callback failed for %s", session.id)
            await session.close(1011, "internal error", drain_timeout=0)
            return False
        return True

    async def _read(self, session: Session, table: RouteTable) -> None:
        clock = asyncio.get_running_loop().time
        endpoint = self._endpoint
        try:
            async for raw in session.connection:
                session.last_seen = clock()
                if self._stopping:
                    refuse(session, raw)
                    continue
                self._inflight += 1
                try:
                    await dispatch(session, table, raw, endpoint)
                finally:
                    self._inflight -= 1
                    if not self._inflight and self._stopping:
                        self._inflight_done.set()
        except ConnectionClosed as exc:
            # Ping timeout, abrupt disconnect: the session just ends (websockets logs how).
            # A message over the limit is the client's mistake and easy to miss: say which.
            if exc.sent is not None and exc.sent.code == MESSAGE_TOO_BIG and not (
                exc.rcvd_then_sent
            ):
                _log.warning(
                    "websocket server %s: closed session %s of %s on %s with 1009: it sent a "
                    "message larger than max_message_size (%d bytes)",
                    self.name,
                    session.id,
                    peer_of(session.connection),
                    session.path,
                    self._max_message_size,
                    extra={"session": session.id, "max_message_size": self._max_message_size},
                )
