"""Broker -> WebSocket: a memory-broker subscriber pushes events to a room via room_pusher."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from framework import App
from framework.broker import BrokerServer, MemoryBroker, Publisher, Router
from framework.transport.websocket import Session, WebSocketServer, room_pusher

from .conftest import TIMEOUT, open_client, recv_json, request


class OrderPaid(BaseModel):
    order_id: str
    customer_id: str
    amount_cents: int


async def test_published_event_reaches_the_room_members_only() -> None:
    ws = WebSocketServer()

    @ws.on("watch")
    async def watch(customer_id: str, session: Session) -> None:
        session.join(f"customer:{customer_id}")

    router = Router()
    router.subscriber("order-paid", group="ws-push")(
        room_pusher(ws, lambda e: f"customer:{e.customer_id}", type="order.paid", model=OrderPaid)
    )
    broker = MemoryBroker(name="bridge")
    app = App(
        "bridge-test",
        servers=[BrokerServer(broker, [router]), ws],
        handle_signals=False,
        stop_timeout=5,
    )
    async with app, open_client(ws.endpoint) as alice, open_client(ws.endpoint) as bob:
        assert (await request(alice, "watch", "alice", id=1))["type"] == "watch.reply"
        assert (await request(bob, "watch", "bob", id=1))["type"] == "watch.reply"
        publisher = Publisher(broker)
        await publisher.publish(
            "order-paid", OrderPaid(order_id="o-1", customer_id="alice", amount_cents=990)
        )
        assert await recv_json(alice) == {
            "type": "order.paid",
            "payload": {"order_id": "o-1", "customer_id": "alice", "amount_cents": 990},
        }
        # Bob's next frame is his own event, not Alice's.
        await publisher.publish(
            "order-paid", OrderPaid(order_id="o-2", customer_id="bob", amount_cents=5)
        )
        assert (await recv_json(bob))["payload"]["order_id"] == "o-2"
        # Had Alice been sent Bob's event, it would be queued ahead of this reply.
        assert (await request(alice, "watch", "alice", id=2))["type"] == "watch.reply"


async def test_room_function_may_fan_out_to_several_rooms_or_skip() -> None:
    ws = WebSocketServer()
    sessions: asyncio.Queue[Session] = asyncio.Queue()
    ws.on_connect(sessions.put)
    await ws.start()
    try:
        push = room_pusher(
            ws,
            lambda e: None if e["skip"] else ["all", f"user:{e['user']}"],
            payload=lambda e: {"n": e["n"]},
        )
        async with open_client(ws.endpoint) as client:
            session = await asyncio.wait_for(sessions.get(), TIMEOUT)
            session.join("all")
            session.join("user:u1")
            await push({"skip": True, "user": "u1", "n": 0})
            await push({"skip": False, "user": "u1", "n": 1})
            assert await recv_json(client) == {"n": 1}  # once per room it is in
            assert await recv_json(client) == {"n": 1}
    finally:
        await ws.stop(5)
