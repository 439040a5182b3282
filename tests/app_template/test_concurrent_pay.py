"""Concurrent payments of one order: exactly one wins, and each event is added once.

``pay`` and ``mark_paid`` change the status with a compare-and-set inside their unit of
work, so racing requests (or racing ``payment-success`` deliveries) cannot both see the old
status and both add their event. Counted in the ``outbox`` table, where the unit of work
adds each message, and in ``outbox_sent``, where the relay moves it once sent (and keeps it
for its retention period).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select, union_all

from framework import App
from framework.data.tables import outbox, outbox_sent

from app_template.api.order.v1.events import ORDER_PAID, PAYMENT_SUCCESS
from app_template.container import Container

from .conftest import endpoint

# A service per case over real sockets: out of a scaffolded project's default (offline, fast)
# run, like test_unstorable_input.py; `-m slow` and the framework's own suite run it.
pytestmark = pytest.mark.slow


#: Enough racers that, without the compare-and-set, several read the old status together.
RACERS = 10


async def _outbox_count(container: Container, topic: str, order_id: str) -> int:
    added = union_all(
        *(
            select(table.c.id).where(table.c.topic == topic, table.c.key == order_id.encode())
            for table in (outbox, outbox_sent)
        )
    ).subquery()
    query = select(func.count()).select_from(added)
    async with container.database().engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _create(client: httpx.AsyncClient) -> str:
    created = await client.post("/v1/orders", json={"customer_id": "race", "amount_cents": 900})
    assert created.status_code == 201, created.text
    order_id: str = created.json()["id"]
    return order_id


async def _wait_paid(client: httpx.AsyncClient, order_id: str) -> None:
    status = ""
    for _ in range(200):
        status = (await client.get(f"/v1/orders/{order_id}")).json()["status"]
        if status == "PAID":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} stayed {status}")


async def test_concurrent_pays_accept_one_and_publish_once(
    wired: tuple[App, Container],
) -> None:
    app, container = wired
    async with httpx.AsyncClient(base_url=endpoint(app, "http"), timeout=60) as client:
        order_id = await _create(client)
        replies = await asyncio.gather(
            *(client.post(f"/v1/orders/{order_id}/pay") for _ in range(RACERS))
        )
        codes = sorted(r.status_code for r in replies)
        assert codes == [202] + [409] * (RACERS - 1), [r.text for r in replies]
        assert {r.json()["reason"] for r in replies if r.status_code == 409} == {
            "ORDER_ALREADY_PAID"
        }
        await _wait_paid(client, order_id)
        # A pay after the order is PAID is refused the same way.
        late = await client.post(f"/v1/orders/{order_id}/pay")
        assert late.status_code == 409 and late.json()["reason"] == "ORDER_ALREADY_PAID"
    assert await _outbox_count(container, PAYMENT_SUCCESS, order_id) == 1
    assert await _outbox_count(container, ORDER_PAID, order_id) == 1


async def test_concurrent_mark_paid_adds_order_paid_once(wired: tuple[App, Container]) -> None:
    app, container = wired
    async with httpx.AsyncClient(base_url=endpoint(app, "http"), timeout=60) as client:
        order_id = await _create(client)
    usecase = container.order_usecase()
    # Racing deliveries of distinct payment-success messages (the subscriber runs with
    # concurrency > 1; the inbox only skips the same message twice).
    paid = await asyncio.gather(*(usecase.mark_paid(order_id) for _ in range(RACERS)))
    assert {order.status.value for order in paid} == {"PAID"}
    assert await _outbox_count(container, ORDER_PAID, order_id) == 1
