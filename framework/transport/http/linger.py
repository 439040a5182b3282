"""Socket-level help for the HTTP protocol: unread bytes and the lingering close.

:func:`unread_count` tells how many bytes a connection's socket holds that the event loop has
not read yet (``FIONREAD``); :class:`LingeringTransport` wraps a connection's transport so
that closing it does not reset the connection under the client (see its docstring). Both
serve :mod:`framework.transport.http.protocol`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["LINGER_SECONDS", "LingeringTransport", "unread_count"]


def unread_count(transport: asyncio.BaseTransport) -> int:
    """How many bytes the socket has received that the event loop has not read yet (on
    systems without ``FIONREAD``: 1 if there are some)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        fileno = sock.fileno()
        if fileno < 0:
            return 0
        if _FIONREAD is not None:
            import fcntl

            count: int = struct.unpack("i", fcntl.ioctl(fileno, _FIONREAD, b"\0\0\0\0"))[0]
            return count
        # A duplicate of the descriptor: asyncio's socket wrapper refuses recv().
        with socket.socket(fileno=socket.dup(fileno)) as probe:
            return len(probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # BlockingIOError: nothing to read; or the socket is gone
        return 0


def _fionread() -> int | None:
    try:
        import termios
    except ImportError:  # pragma: no cover - Windows
        return None
    return int(termios.FIONREAD)


_FIONREAD = _fionread()


#: Seconds a closing connection keeps reading (and discarding) what the client still sends.
LINGER_SECONDS = 2.0


class LingeringTransport:
    """The connection's transport, whose :meth:`close` is a lingering close.

    Closing a socket that has received bytes it did not read makes the kernel send a reset,
    and a reset makes the client's kernel drop what it received and had not yet handed to
    the client: the last response (a 408, the ``Connection: close`` answer of a drain) would
    be lost whenever the client had already sent more. So a close first ends our side
    (``write_eof``: FIN once the responses are sent), then reads and discards until the client
    closes too or ``linger`` seconds pass (Apache's and nginx's lingering close). TLS
    transports, which cannot half-close, and a transport handed to another protocol (a
    WebSocket upgrade) close at once. ``on_linger`` is called when lingering starts: the
    connection has nothing more to say, so the server's stop does not wait for it (an idle
    pooled client would otherwise hold every stop for ``linger`` seconds).
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        owner: object,
        linger: float,
        on_linger: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._owner = owner
        self._linger = linger
        self._on_linger = on_linger
        self._lingering = False
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()

    def close(self) -> None:
        transport = self._transport
        if self._lingering or transport.is_closing():
            return
        if transport.get_protocol() is not self._owner or not transport.can_write_eof():
            transport.close()
            return
        self._lingering = True
        try:
            transport.write_eof()
            transport.resume_reading()
        except (OSError, RuntimeError):
            transport.close()
            return
        self._timer = asyncio.get_running_loop().call_later(self._linger, transport.close)
        self._on_linger()

    def lost(self) -> None:
        """The connection is gone: stop the linger timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
