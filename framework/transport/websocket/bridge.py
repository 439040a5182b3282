"""Pushing broker events to WebSocket rooms.

:func:`room_pusher` builds a broker subscriber handler that forwards every event it receives
to one or more rooms of a :class:`~framework.transport.websocket.server.WebSocketServer`::

    router = Router()
    router.subscriber("order-paid", group="ws-push")(
        room_pusher(ws, lambda e: f"orders:{e.customer_id}", type="order.paid", model=OrderPaid)
    )

Each instance of the service should get every event (its own clients are connected to it), so
mount the subscriber with ``broadcast=True`` when several instances run. Pushing never waits
for a client, so a slow browser cannot hold back the broker's acknowledgements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from framework.transport.websocket.server import WebSocketServer

__all__ = ["room_pusher"]

RoomSpec = str | Callable[[Any], str | Iterable[str] | None]


def _rooms_of(spec: RoomSpec, event: Any) -> Iterable[str]:
    rooms = spec(event) if callable(spec) else spec
    if rooms is None:
        return ()
    return (rooms,) if isinstance(rooms, str) else rooms


def room_pusher(
    server: WebSocketServer,
    room: RoomSpec,
    *,
    type: str | Callable[[Any], str] | None = None,
    payload: Callable[[Any], Any] | None = None,
    model: Any = None,
) -> Callable[[Any], Awaitable[None]]:
    """A subscriber handler: ``event -> server.send_to_room(room(event), ...)``.

    Args:
        server: the WebSocket server whose rooms receive the events.
        room: a room name, or a function of the event returning a room, several rooms, or
            ``None`` to skip the event.
        type: wrap what is sent in a ``{"type", "payload"}`` envelope with this type (or a
            function of the event giving it); ``None`` sends the payload as is.
        payload: what to send for an event (default: the event itself).
        model: the event's type (e.g. a pydantic model), set as the handler's payload
            annotation so the broker decodes messages into it.
    """

    async def push(event: Any) -> None:
        body = payload(event) if payload is not None else event
        kind = type(event) if callable(type) else type
        for name in _rooms_of(room, event):
            await server.send_to_room(name, body, type=kind)

    if model is not None:
        push.__annotations__ = {"event": model, "return": None}
    push.__qualname__ = push.__name__ = f"room_pusher_{server.name}"
    return push
