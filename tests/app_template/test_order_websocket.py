"""An order paid over HTTP reaches a WebSocket client watching it, through the broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from framework import App

from .conftest import UNKNOWN_ID, endpoint


async def receive(ws: websockets.ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), 10)
    message: dict[str, Any] = json.loads(frame)
    return message


async def test_paid_order_is_pushed_to_the_watching_client_only(service: App) -> None:
    ws_url = endpoint(service, "ws") + "/ws/orders"
    async with httpx.AsyncClient(base_url=endpoint(service, "http")) as http:
        watched = (await http.post("/v1/orders", json={"customer_id": "c1",
                                                       "amount_cents": 700})).json()
        other = (await http.post("/v1/orders", json={"customer_id": "c2",
                                                     "amount_cents": 800})).json()
        async with websockets.connect(ws_url) as watcher, websockets.connect(ws_url) as bystander:
            await watcher.send(json.dumps({"type": "order.watch", "id": "w1",
                                           "payload": {"order_id": watched["id"]}}))
            reply = await receive(watcher)
            assert reply["type"] == "order.watch.reply" and reply["id"] == "w1"
            assert reply["payload"]["status"] == "CREATED"

            await bystander.send(json.dumps({"type": "order.watch",
                                             "payload": {"order_id": other["id"]}}))
            await receive(bystander)

            missing = {"type": "order.watch", "payload": {"order_id": UNKNOWN_ID}}
            await bystander.send(json.dumps(missing))
            error = await receive(bystander)
            assert error["type"] == "error"
            assert error["error"]["reason"] == "ORDER_NOT_FOUND"

            assert (await http.post(f"/v1/orders/{watched['id']}/pay")).status_code == 202
            pushed = await receive(watcher)
            assert pushed["type"] == "order.status"
            assert pushed["payload"] == {
                "order_id": watched["id"],
                "status": "PAID",
                "changed_at": pushed["payload"]["changed_at"],
            }
            assert pushed["payload"]["changed_at"].endswith("Z")
            # The bystander watches another order: nothing arrives for it.
            try:
                unexpected = await asyncio.wait_for(bystander.recv(), 0.3)
            except TimeoutError:
                unexpected = None
            assert unexpected is None
