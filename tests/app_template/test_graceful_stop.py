"""The reference service on its embedded defaults keeps accepted work across a graceful stop
(issue 8, item 1): every order whose payment was accepted (202) is PAID once the App stopped.
Before, the memory broker dropped the payment events queued but not started, and those
orders stayed PAYMENT_PENDING forever."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from app_template.biz.order import Order, OrderUseCase
from app_template.wire import wire_app

from .conftest import endpoint, make_bootstrap

# Sixty orders over real sockets take seconds: out of a scaffolded project's default run.
pytestmark = pytest.mark.slow

ORDERS = 60


async def test_item1_every_accepted_payment_is_applied_after_a_graceful_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The payment subscriber is held until the stop begins, so every payment event is still
    # queued (or not even fetched) when it does: the backlog a slow consumer has at SIGTERM.
    gate = asyncio.Event()
    mark_paid = OrderUseCase.mark_paid

    async def held_mark_paid(self: OrderUseCase, order_id: str) -> Order:
        await gate.wait()
        return await mark_paid(self, order_id)

    monkeypatch.setattr(OrderUseCase, "mark_paid", held_mark_paid)

    db = tmp_path / "orders.db"
    app = wire_app(make_bootstrap(f"sqlite+aiosqlite:///{db}"))
    app.handle_signals = False
    app.stop_timeout = 60  # generous: the point is that the stop waits, not how fast it is
    app.before_stop.append(gate.set)
    await app.start()
    try:
        async with httpx.AsyncClient(base_url=endpoint(app, "http"), timeout=30) as client:
            for n in range(ORDERS):
                created = await client.post(
                    "/v1/orders", json={"customer_id": f"c{n}", "amount_cents": 100}
                )
                paid = await client.post(f"/v1/orders/{created.json()['id']}/pay")
                assert paid.status_code == 202, paid.text
    finally:
        await app.shutdown()  # what SIGTERM does

    with sqlite3.connect(db) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status"))
    assert statuses == {"PAID": ORDERS}
