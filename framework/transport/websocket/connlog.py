"""The logger handed to ``websockets``: its lines name the peer, the path and the close code.

``websockets`` logs each connection with the connection object itself as the ``websocket``
extra, which a formatter can only print as ``<ServerConnection object at 0x...>``, and says
"connection closed" without saying how. :class:`ConnectionLog` rewrites those records::

    websocket client 127.0.0.1:52114 connected to /ws/orders
    websocket client 127.0.0.1:52114 on /ws/orders disconnected: server sent 1009 (message ...
    websocket handshake from 127.0.0.1:52120 for /nope rejected: 404 Not Found

with ``peer``, ``path`` and ``close_code`` as fields. The library's "server listening /
closing / closed" lines repeat the server's own and go to DEBUG.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from websockets.frames import Close

from framework.transport.address import host_port

__all__ = ["ConnectionLog", "describe_close", "peer_of"]

# What websockets says about the whole server: ours says it already, with the server's name.
_SERVER_LINES = frozenset({"server listening on %s", "server closing", "server closed"})


def peer_of(connection: Any) -> str:
    """``host:port`` of the client at the other end of ``connection``."""
    address = getattr(connection, "remote_address", None)
    if isinstance(address, tuple) and len(address) >= 2:
        return host_port(str(address[0]), int(address[1]))
    return "unknown peer"


def _path(connection: Any) -> str:
    request = getattr(connection, "request", None)
    return str(getattr(request, "path", "")) or "?"


def describe_close(protocol: Any) -> tuple[int | None, str]:
    """How a connection ended: the code of the first close frame, and in words who sent it
    and why (``"server sent 1009 (message too big) frame with ..."``)."""
    sent: Close | None = getattr(protocol, "close_sent", None)
    received: Close | None = getattr(protocol, "close_rcvd", None)
    if sent is not None and (received is None or not protocol.close_rcvd_then_sent):
        return sent.code, f"server sent {sent}"
    if received is not None:
        return received.code, f"client sent {received}"
    return None, "connection lost without a close frame"


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """A ``websockets`` logger that writes what a reader needs instead of object reprs.

    Args:
        logger: where the records go (``pykratos.websocket``).
        server: the WebSocket server's name, added as the ``server`` field.
    """

    def __init__(self, logger: logging.Logger, server: str) -> None:
        super().__init__(logger, {"server": server})

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        extra: Mapping[str, Any] = kwargs.pop("extra", None) or {}
        connection = extra.get("websocket")
        fields: dict[str, Any] = dict(self.extra or {})
        if msg in _SERVER_LINES:
            level = logging.DEBUG
            msg = f"websocket server {fields['server']}: {msg}"
        elif connection is not None:
            msg, args = self._rewrite(str(msg), args, connection, fields)
        if not self.logger.isEnabledFor(level):
            return
        # stacklevel: point at websockets' call, not at this adapter.
        kwargs.setdefault("stacklevel", 3)
        self.logger.log(level, msg, *args, extra=fields, **kwargs)

    @staticmethod
    def _rewrite(
        msg: str, args: tuple[object, ...], connection: Any, fields: dict[str, Any]
    ) -> tuple[str, tuple[object, ...]]:
        peer, path = peer_of(connection), _path(connection)
        fields.update(peer=peer, path=path)
        if msg == "connection open":
            return "websocket client %s connected to %s", (peer, path)
        if msg == "connection closed":
            fields["close_code"], how = describe_close(getattr(connection, "protocol", None))
            return "websocket client %s on %s disconnected: %s", (peer, path, how)
        if msg.startswith("connection rejected"):  # "connection rejected (%d %s)"
            return "websocket handshake from %s for %s rejected: %s %s", (peer, path, *args)
        if not args:
            msg = msg.replace("%", "%%")  # "% sent keepalive ping" is text, not a format
        return f"websocket client %s on %s: {msg}", (peer, path, *args)
