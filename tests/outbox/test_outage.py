"""Broker unreachable while orders are paid, then back: every order PAID, one ``order-paid``
each (de-duplicated by message-id), none missing; ``pay`` never waits for the broker."""

from __future__ import annotations

import asyncio
import os
import time

import httpx

from framework.data import PENDING

from app_template.container import Container
from app_template.wire import wire_app

from ..app_template.conftest import endpoint, make_bootstrap
from ..data.conftest import eventually
from .conftest import ORDER_PAID, BrokerLink, Db

#: orders paid during the outage (PYKRATOS_OUTBOX_ORDERS overrides)
ORDERS = int(os.environ.get("PYKRATOS_OUTBOX_ORDERS", "1000"))


async def _all(
    client: httpx.AsyncClient, requests: list[tuple[str, str, dict | None]]
) -> list[tuple[httpx.Response, float]]:  # type: ignore[type-arg]
    limit = asyncio.Semaphore(16)

    async def one(method: str, url: str, body: object) -> tuple[httpx.Response, float]:
        async with limit:
            started = time.perf_counter()
            response = await client.request(method, url, json=body)
            return response, time.perf_counter() - started

    return await asyncio.gather(*(one(*r) for r in requests))


async def test_orders_paid_while_the_broker_is_down_all_flow_once_it_is_back(
    db: Db, link: BrokerLink
) -> None:
    bootstrap = make_bootstrap(db.url, db.schema)
    bootstrap.data.broker.kind = link.kind  # type: ignore[assignment]
    bootstrap.data.broker.options = link.options
    bootstrap.data.outbox.max_backoff = 0.5
    bootstrap.log.level = "WARNING"
    app = wire_app(bootstrap, Container())
    app.handle_signals = False
    await link.start_reading()
    async with app, httpx.AsyncClient(base_url=endpoint(app, "http"), timeout=30) as client:
        created = await _all(
            client,
            [
                ("POST", "/v1/orders", {"customer_id": f"c{n}", "amount_cents": 100 + n})
                for n in range(ORDERS)
            ],
        )
        order_ids = {response.json()["id"] for response, _ in created}
        assert len(order_ids) == ORDERS

        await link.proxy.cut()
        paid = await _all(client, [("POST", f"/v1/orders/{o}/pay", None) for o in order_ids])
        assert {response.status_code for response, _ in paid} == {202}
        slowest = max(elapsed for _, elapsed in paid)
        # The broker's publish_timeout is 10 s: a request that published would take that
        # long (then fail); these only wait for the database (SQLite serializes writers).
        assert slowest < 8, f"a pay request took {slowest:.2f}s with the broker down"
        statuses = await db.order_statuses()
        assert set(statuses.values()) == {"PAYMENT_PENDING"}
        pending = await db.scalar(f"SELECT count(*) FROM outbox WHERE state = {PENDING}")
        assert pending == ORDERS

        await link.proxy.restore()

        await db.wait_all(ORDERS, "PAID", timeout=240)
        await eventually(lambda: len({m for _, m in link.seen}) >= ORDERS, timeout=60)
    per_order = link.one_event_per_order(order_ids)
    assert set(per_order) == order_ids  # no stranger
    missing = [o for o, ids in per_order.items() if not ids]
    doubled = [o for o, ids in per_order.items() if len(ids) > 1]
    assert missing == [] and doubled == [], (len(missing), len(doubled))
    # 0 double effects in the database: mark_paid added order-paid once per order
    assert set((await db.outbox_rows_per_key(ORDER_PAID)).values()) == {1}
    assert await db.scalar("SELECT count(*) FROM inbox") == ORDERS
