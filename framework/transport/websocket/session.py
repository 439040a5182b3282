"""One connected client: identity, rooms and a bounded outbound queue with its writer task.

Sending never waits for the socket. :meth:`Session.push_frame` writes the frame straight into
the connection's transport when nothing is queued and the transport's write buffer is below
``write_limit`` (the common case: no task switch, and a broadcast frames its message once for
every client, see :class:`Outgoing`). Otherwise the frame joins a bounded queue that the
session's writer task drains as the client reads. When the queue is full the slow-client
policy applies:

- ``"drop_oldest"``: the oldest queued frame is discarded (counted in :attr:`Session.dropped`);
  fine for state updates where the newest matters most;
- ``"disconnect"``: the queue is discarded and the connection is closed with code 1013
  (try again later), so the client reconnects and resynchronises.

So the memory held for one client is bounded by ``write_limit`` (plus one frame) in the
transport and ``send_queue_size`` frames in the queue, whatever the server publishes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN

from framework.transport.websocket.envelope import encode_outbound

if TYPE_CHECKING:
    from framework.transport.websocket.registry import SessionRegistry

__all__ = ["SLOW_CLIENT_CLOSE_CODE", "Outgoing", "Session", "SlowClientPolicy"]

SlowClientPolicy = Literal["drop_oldest", "disconnect"]

#: Close code for a client dropped by the ``"disconnect"`` policy (RFC 6455 "Try Again Later").
SLOW_CLIENT_CLOSE_CODE = 1013

_log = logging.getLogger("pykratos.websocket")


class Outgoing:
    """One outbound message, shareable by any number of sessions.

    Server frames are not masked, so every connection without extensions puts the very same
    bytes on the wire: :attr:`wire` frames the message once, on first use, and a broadcast
    then costs one ``transport.write`` per client.
    """

    __slots__ = ("_wire", "data", "text")

    def __init__(self, data: bytes, text: bool = True) -> None:
        self.data = data
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        """The complete, unmasked WebSocket frame."""
        if self._wire is None:
            opcode = Opcode.TEXT if self.text else Opcode.BINARY
            self._wire = Frame(opcode, self.data).serialize(mask=False)
        return self._wire

    def send_via(self, connection: ServerConnection) -> None:
        """Frame it through the connection's protocol (negotiated extensions apply)."""
        if self.text:
            connection.protocol.send_text(self.data)
        else:
            connection.protocol.send_binary(self.data)
        connection.send_data()


class Session:
    """A connected WebSocket client, as handlers and the server's send API see it.

    Attributes:
        id: unique id of this connection (``server.send(session.id, ...)``).
        path: the path it connected to (``/ws/orders``).
        principal: what ``authenticate`` returned for its handshake (``None`` without auth).
        headers: the handshake's request headers (lower-cased names).
        query: the handshake's query parameters.
        state: free-form per-connection storage for handlers.
        connected_at: wall-clock time of the handshake (seconds since the epoch).
        last_seen: event-loop time of the last message received (idle timeout).
        dropped: frames discarded by the slow-client policy.
    """

    __slots__ = (
        "_close_timeout",
        "_closed",
        "_closer",
        "_connection",
        "_drained",
        "_policy",
        "_queue",
        "_queue_size",
        "_registry",
        "_wakeup",
        "_write_limit",
        "_writer",
        "_writing",
        "connected_at",
        "dropped",
        "headers",
        "id",
        "last_seen",
        "path",
        "principal",
        "query",
        "rooms_joined",
        "state",
    )

    def __init__(
        self,
        id: str,
        path: str,
        connection: ServerConnection,
        registry: SessionRegistry,
        *,
        principal: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        send_queue_size: int = 1024,
        slow_client_policy: SlowClientPolicy = "drop_oldest",
        write_limit: int = 64 * 1024,
        close_timeout: float = 10.0,
    ) -> None:
        self.id = id
        self.path = path
        self.principal = principal
        self.headers: Mapping[str, str] = headers or {}
        self.query: Mapping[str, str] = query or {}
        self.state: dict[str, Any] = {}
        self.connected_at = time.time()
        self.last_seen = 0.0
        self.dropped = 0
        #: rooms this session is in; maintained by the registry (read :attr:`rooms`).
        self.rooms_joined: set[str] = set()
        self._connection = connection
        self._registry = registry
        self._queue: deque[Outgoing] = deque()
        self._queue_size = send_queue_size
        self._policy = slow_client_policy
        self._write_limit = write_limit
        self._close_timeout = close_timeout
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._writing = False
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, path={self.path!r}, principal={self.principal!r})"

    # -- rooms -------------------------------------------------------------------------

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this session has joined."""
        return frozenset(self.rooms_joined)

    def join(self, room: str) -> None:
        """Join ``room``: :meth:`WebSocketServer.send_to_room` will reach this session."""
        if not self._closed:
            self._registry.join(self, room)

    def leave(self, room: str) -> None:
        """Leave ``room`` (no error if not a member)."""
        self._registry.leave(self, room)

    # -- sending -----------------------------------------------------------------------

    @property
    def connection(self) -> ServerConnection:
        """The underlying websockets connection (remote address, subprotocol, ...)."""
        return self._connection

    @property
    def closed(self) -> bool:
        """True once the session stopped accepting frames (closing or disconnected)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Frames waiting in the outbound queue."""
        return len(self._queue)

    async def send(self, obj: Any, *, type: str | None = None) -> bool:
        """Queue ``obj`` for this client; False if the session is closed.

        ``str`` is sent as a text frame and ``bytes`` as a binary frame unchanged, anything else
        as JSON; with ``type`` the object becomes the payload of a ``{"type", "payload"}``
        envelope. Returns once queued: it never waits for a slow client.
        """
        data, text = encode_outbound(obj, type)
        return self.push(data, text)

    def push(self, data: bytes, text: bool = True) -> bool:
        """Queue an already encoded message (``text``: send it as a text frame)."""
        return self.push_frame(Outgoing(data, text))

    def push_frame(self, frame: Outgoing) -> bool:
        """Queue a message shared by many sessions (fan-out: encoded and framed once)."""
        if self._closed:
            return False
        if not self._queue and not self._writing:
            connection = self._connection
            if connection.protocol.state is not OPEN:
                return False
            transport = connection.transport
            if transport.get_write_buffer_size() <= self._write_limit:
                # Fast path, as websockets.broadcast does: hand the frame to the transport now;
                # nothing is queued ahead of it, so ordering holds.
                try:
                    if connection.protocol.extensions:  # e.g. deflate: frame per connection
                        frame.send_via(connection)
                    else:
                        transport.write(frame.wire)
                except Exception as exc:  # the transport broke under us: the reader sees it
                    _log.debug("write to session %s failed: %r", self.id, exc)
                    return False
                return True
        queue = self._queue
        queue.append(frame)
        if len(queue) > self._queue_size:
            self._overflow()
        elif len(queue) == 1:
            self._drained.clear()
            self._wakeup.set()
        return not self._closed

    def _overflow(self) -> None:
        if self._policy == "drop_oldest":
            self._queue.popleft()
            self.dropped += 1
            return
        self.dropped += len(self._queue)
        self._queue.clear()
        self._drained.set()
        self._closed = True
        _log.warning(
            "closing slow websocket session %s: send queue full (%d frames)",
            self.id,
            self._queue_size,
        )
        self._closer = asyncio.get_running_loop().create_task(
            self._close_now(SLOW_CLIENT_CLOSE_CODE, "slow client: send queue full")
        )

    async def _write_loop(self) -> None:
        connection = self._connection
        queue = self._queue
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while queue:
                frame = queue.popleft()
                self._writing = True
                try:
                    # send() writes, then waits while the transport is above its high-water
                    # mark: the writer advances only as fast as the client reads.
                    await connection.send(frame.data, text=frame.text)
                except ConnectionClosed:
                    queue.clear()
                    self._closed = True
                    self._drained.set()
                    return
                finally:
                    self._writing = False
            self._drained.set()

    async def flush(self) -> None:
        """Wait until every queued frame was handed to the transport."""
        await self._drained.wait()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task (called by the server once the handshake succeeded)."""
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"ws-writer-{self.id}"
            )

    async def close(
        self, code: int = 1000, reason: str = "", *, drain_timeout: float | None = 5.0
    ) -> None:
        """Stop accepting frames, let queued ones go out (up to ``drain_timeout`` seconds),
        then close the connection with ``code``."""
        self._closed = True
        if drain_timeout is None or drain_timeout > 0:
            try:
                async with asyncio.timeout(drain_timeout):
                    await self._drained.wait()
            except TimeoutError:
                _log.warning(
                    "session %s: %d frames not flushed before close", self.id, len(self._queue)
                )
        await self._close_now(code, reason)

    async def _close_now(self, code: int, reason: str) -> None:
        if self._writer is not None:
            self._writer.cancel()
        self._queue.clear()
        self._drained.set()
        try:
            # close() writes the close frame then waits for the transport to drain and the
            # client to answer; a client that stopped reading would hold it forever.
            async with asyncio.timeout(self._close_timeout):
                await self._connection.close(code, reason)
        except TimeoutError:
            _log.info("session %s did not complete the close handshake: aborting", self.id)
            self._connection.transport.abort()

    def detach(self) -> None:
        """Release the writer and queued frames once the connection is gone (server use)."""
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
        self._queue.clear()
        self._drained.set()
