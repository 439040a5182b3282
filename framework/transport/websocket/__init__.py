"""WebSocket transport (``pip install pykratos[ws]``), built on ``websockets``.

::

    ws = WebSocketServer(port=8001, authenticate=token_auth, middlewares=[recovery()])

    @ws.on("order.get")
    async def get_order(query: OrderQuery, session: Session) -> Order: ...

    await ws.send_to_room("orders:42", {"status": "paid"}, type="order.updated")

See :mod:`.envelope` for the wire format, :mod:`.session` for queues and slow clients, and
:mod:`.bridge` to push broker events to rooms.
"""

from framework.di import WiringError
from framework.transport.websocket.bridge import room_pusher
from framework.transport.websocket.dispatch import KIND
from framework.transport.websocket.envelope import (
    BAD_FRAME,
    BAD_PAYLOAD,
    SHUTTING_DOWN,
    UNKNOWN_TYPE,
    FrameError,
    Incoming,
    decode_binary,
    decode_text,
    encode_binary,
    encode_text,
)
from framework.transport.websocket.handler import HandlerSignatureError
from framework.transport.websocket.handshake import (
    ORIGIN_NOT_ALLOWED,
    ROUTE_NOT_FOUND,
    UNAUTHENTICATED,
    Authenticate,
    Handshake,
)
from framework.transport.websocket.router import Route, WebSocketRouter
from framework.transport.websocket.server import (
    GOING_AWAY,
    IDLE_CLOSE_CODE,
    POLICY_VIOLATION,
    WebSocketServer,
)
from framework.transport.websocket.session import (
    SLOW_CLIENT_CLOSE_CODE,
    Outgoing,
    Session,
    SlowClientPolicy,
)

__all__ = [
    "BAD_FRAME",
    "BAD_PAYLOAD",
    "GOING_AWAY",
    "IDLE_CLOSE_CODE",
    "KIND",
    "ORIGIN_NOT_ALLOWED",
    "POLICY_VIOLATION",
    "ROUTE_NOT_FOUND",
    "SHUTTING_DOWN",
    "SLOW_CLIENT_CLOSE_CODE",
    "UNAUTHENTICATED",
    "UNKNOWN_TYPE",
    "Authenticate",
    "FrameError",
    "HandlerSignatureError",
    "Handshake",
    "Incoming",
    "Outgoing",
    "Route",
    "Session",
    "SlowClientPolicy",
    "WebSocketRouter",
    "WebSocketServer",
    "WiringError",
    "decode_binary",
    "decode_text",
    "encode_binary",
    "encode_text",
    "room_pusher",
]
