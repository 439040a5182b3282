"""Issue 8 item 5, broker-neutral part: background tasks that die are restarted (WARNING),
a subscription that cannot recover is unhealthy, and the App's readiness follows."""

from __future__ import annotations

import asyncio
import logging

import pytest

from framework import App
from framework.broker import BrokerServer, Health, MemoryBroker, Router
from framework.broker import health as health_module
from framework.broker.health import CRASH_LOOP, keep_running
from tests.broker.helpers import Collector

log = logging.getLogger("tests.health")


async def test_a_task_that_dies_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = Collector()

    async def body() -> None:
        runs.add(len(runs.items))
        if len(runs.items) == 1:
            raise RuntimeError("bug in the loop")
        await asyncio.Event().wait()  # the second run keeps running

    with caplog.at_level(logging.WARNING, logger="tests.health"):
        task = keep_running(body, what="loop", stopping=lambda: False, logger=log)
        await runs.wait(2)
    warning = next(r for r in caplog.records if r.name == "tests.health")
    assert warning.levelno == logging.WARNING
    assert "loop stopped unexpectedly (RuntimeError: bug in the loop)" in warning.getMessage()
    task.cancel()  # our own stop: not restarted
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runs.items) == 2


async def test_a_crash_loop_makes_health_fail_until_a_run_lasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_module, "_FIRST_PAUSE", 0.0)
    monkeypatch.setattr(health_module, "_STABLE", 0.5)
    health = Health("sub")
    changes = Collector()
    health.watch(lambda: changes.add(health.problem))
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        if runs <= CRASH_LOOP:
            raise RuntimeError("again")
        await asyncio.Event().wait()

    task = keep_running(body, what="worker 0", stopping=lambda: False, logger=log, health=health)
    await changes.wait(2)  # failed after the crash loop, healthy once a run lasted 0.5 s
    assert changes.items[0] is not None and "worker 0 keeps stopping" in changes.items[0]
    assert changes.items[1] is None and health.problem is None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_memory_worker_that_dies_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    handled = Collector()
    router = Router()

    @router.subscriber("orders", group="g")
    async def handle(body: bytes) -> None:
        if body == b"crash":
            raise asyncio.CancelledError("not a cancellation we asked for")
        handled.add(body)

    broker = MemoryBroker(partitions=1)
    server = BrokerServer(broker, [router])
    await server.start()
    try:
        with caplog.at_level(logging.WARNING):
            await broker.publish("orders", b"crash")
            await broker.publish("orders", b"next")
            await handled.wait(1)  # before the fix: the only worker is gone for good
        assert any("stopped unexpectedly" in r.getMessage() for r in caplog.records)
    finally:
        await server.stop(1)


class Readiness:
    endpoint = "test://readiness"

    def __init__(self) -> None:
        self.states: list[bool] = []

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float) -> None:
        return None

    def set_serving(self, serving: bool) -> None:
        self.states.append(serving)


async def test_an_unhealthy_subscription_turns_the_app_not_ready_until_it_recovers() -> None:
    router = Router()

    @router.subscriber("orders", group="g")
    async def handle(body: bytes) -> None:
        return None

    server = BrokerServer(MemoryBroker(), [router])
    readiness = Readiness()
    app = App("health", servers=[server, readiness], handle_signals=False)
    async with app:
        assert readiness.states == [True]
        health = server._subscriptions[0].health  # type: ignore[attr-defined]
        health.fail("consumer", "cannot consume queue 'q'")
        assert readiness.states[-1] is False
        assert server.health_problem is not None and "queue 'q'" in server.health_problem
        health.ok("consumer")
        assert readiness.states[-1] is True and server.health_problem is None
    assert readiness.states[-1] is False


def test_setup_logging_quiets_the_client_libraries_unless_configured() -> None:
    from framework.log import setup_logging

    saved = {n: logging.getLogger(n).level for n in ("aiokafka", "aio_pika", "aiormq")}
    root_level = logging.getLogger().level
    try:
        for name in saved:
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger("aiormq").setLevel(logging.DEBUG)  # the user's own log config
        setup_logging("console", "INFO")
        assert logging.getLogger("aiokafka").level == logging.WARNING
        assert logging.getLogger("aio_pika").level == logging.WARNING
        assert logging.getLogger("aiormq").level == logging.DEBUG
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_pykratos", False):
                root.removeHandler(handler)
        root.setLevel(root_level)
