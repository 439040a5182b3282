"""kill -9 of ``python -m cmd.server`` while it relays and while it consumes, then a
restart: 0 events lost, 0 double effects in the database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

from ..app_template.test_cmd_server import wait_ready
from ..data.conftest import eventually
from .conftest import ORDER_PAID, PUBLISH_TIMEOUT, BrokerLink, Db
from .test_outage import _all

ROOT = Path(__file__).resolve().parents[2]
ORDERS = int(os.environ.get("PYKRATOS_OUTBOX_CRASH_ORDERS", "300"))


class Service:
    """``python -m cmd.server`` on ``db`` and ``link``'s broker, on fresh ports."""

    def __init__(self, db: Db, link: BrokerLink) -> None:
        self.db, self.link = db, link
        self.proc: asyncio.subprocess.Process | None = None
        self.base = ""

    async def start(self) -> None:
        http_port = free_port()
        self.base = f"http://127.0.0.1:{http_port}"
        env = {
            **os.environ,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(http_port),
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(free_port()),
            "WS_HOST": "127.0.0.1",
            "WS_PORT": "0",
            "DATABASE_URL": self.db.url,
            "APP_DATA__BROKER__KIND": self.link.kind,
            "APP_DATA__BROKER__OPTIONS__PUBLISH_TIMEOUT": str(PUBLISH_TIMEOUT),
            "APP_DATA__OUTBOX__MAX_BACKOFF": "0.5",
            "APP_LOG__LEVEL": "WARNING",
        }
        if self.db.schema:
            env["APP_DATA__DATABASE__SCHEMA"] = self.db.schema
        if self.link.kind == "kafka":
            # Every Kafka option of the link (FAST_JOIN's included), as the service reads it.
            for name, value in self.link.options.items():
                env[f"APP_DATA__BROKER__OPTIONS__{name.upper()}"] = str(value)
        else:
            env["APP_DATA__BROKER__OPTIONS__URL"] = self.link.options["url"]
            env["APP_DATA__BROKER__OPTIONS__RECONNECT_INTERVAL"] = "0.2"
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cmd.server", "-conf", "configs/", cwd=ROOT, env=env
        )
        await wait_ready(f"{self.base}/readyz", self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
        if self.proc is not None:
            await self.proc.wait()


async def _count(db: Db, sql: str) -> int:
    return int(await db.scalar(sql))


@pytest.mark.parametrize("phase", ["relaying", "consuming"])
async def test_kill_9_then_restart_loses_nothing_and_applies_nothing_twice(
    db: Db, link: BrokerLink, phase: str
) -> None:
    service = Service(db, link)
    await link.start_reading()
    try:
        await service.start()
        async with httpx.AsyncClient(base_url=service.base, timeout=30) as client:
            created = await _all(
                client,
                [
                    ("POST", "/v1/orders", {"customer_id": f"c{n}", "amount_cents": 100})
                    for n in range(ORDERS)
                ],
            )
            order_ids = {response.json()["id"] for response, _ in created}
            if phase == "relaying":
                await link.proxy.cut()  # the events pile up in the outbox
            paid = await _all(client, [("POST", f"/v1/orders/{o}/pay", None) for o in order_ids])
            assert {response.status_code for response, _ in paid} == {202}
        if phase == "relaying":
            await link.proxy.restore()
            condition = "SELECT count(*) FROM outbox_sent"
        else:
            condition = "SELECT count(*) FROM orders WHERE status = 'PAID'"
        async with asyncio.timeout(120):
            while await _count(db, condition) == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.005)  # another process's database: no event
        service.kill()
        assert service.proc is not None
        await service.proc.wait()
        paid_at_kill = await _count(db, "SELECT count(*) FROM orders WHERE status = 'PAID'")
        assert paid_at_kill < ORDERS, "the crash came too late to interrupt anything"

        await service.start()  # the same database and broker
        await db.wait_all(ORDERS, "PAID", timeout=240)
        await eventually(lambda: len({m for _, m in link.seen}) >= ORDERS, timeout=60)
    finally:
        await service.stop()
    per_order = link.one_event_per_order(order_ids)
    assert set(per_order) == order_ids
    missing = [o for o, ids in per_order.items() if not ids]
    doubled = [o for o, ids in per_order.items() if len(ids) > 1]
    assert missing == [] and doubled == [], (len(missing), len(doubled))
    # 0 double effects: one payment-success and one order-paid row per order, one inbox record
    assert set((await db.outbox_rows_per_key("payment-success")).values()) == {1}
    assert set((await db.outbox_rows_per_key(ORDER_PAID)).values()) == {1}
    assert await _count(db, "SELECT count(*) FROM inbox") == ORDERS
