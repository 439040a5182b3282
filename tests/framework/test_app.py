"""App lifecycle: start/stop order, hooks, readiness, failures and the stop timeout."""

from __future__ import annotations

import asyncio

import pytest

from framework import App, AppStartError, app_info


class RecordingServer:
    """A Server that records lifecycle calls into a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail: bool = False,
                 stop_delay: float = 0.0) -> None:
        self.name = name
        self.journal = journal
        self.fail = fail
        self.stop_delay = stop_delay
        self.stopped_with: float | None = None

    @property
    def endpoint(self) -> str:
        return f"test://{self.name}"

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fail:
            raise ConnectionRefusedError(f"{self.name} cannot bind")

    async def stop(self, timeout: float) -> None:
        self.stopped_with = timeout
        await asyncio.sleep(self.stop_delay)
        self.journal.append(f"stop {self.name}")

    def set_serving(self, serving: bool) -> None:
        self.journal.append(f"{self.name} serving={serving}")


class Resource:
    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    async def start(self) -> None:
        self.journal.append("resource start")

    async def close(self) -> None:
        self.journal.append("resource close")


def hook(journal: list[str], label: str):  # type: ignore[no-untyped-def]
    async def run() -> None:
        journal.append(label)

    return run


async def test_start_and_stop_order_with_hooks() -> None:
    journal: list[str] = []
    app = App(
        "svc",
        version="1.2.3",
        servers=[RecordingServer("a", journal), RecordingServer("b", journal)],
        resources=[Resource(journal)],
        before_start=[hook(journal, "before start")],
        after_start=[hook(journal, "after start")],
        before_stop=[hook(journal, "before stop")],
        after_stop=[lambda: journal.append("after stop")],
        handle_signals=False,
    )
    async with app:
        info = app_info()
        assert info is not None and info.name == "svc" and info.version == "1.2.3"
        assert info.endpoints == ("test://a", "test://b")
    assert journal == [
        "resource start",
        "before start",
        "start a",
        "start b",
        "a serving=True",
        "b serving=True",
        "after start",
        "before stop",
        "a serving=False",
        "b serving=False",
        "stop b",
        "stop a",
        "resource close",
        "after stop",
    ]


async def test_run_returns_after_stop_is_requested() -> None:
    journal: list[str] = []
    serving = asyncio.Event()
    app = App(
        "svc",
        servers=[RecordingServer("a", journal)],
        handle_signals=False,
        after_start=[serving.set],
    )
    runner = asyncio.create_task(app.run())
    await asyncio.wait_for(serving.wait(), 5)
    assert "a serving=True" in journal
    app.stop()
    await asyncio.wait_for(runner, 5)
    assert journal[-1] == "stop a"


async def test_server_failing_to_start_stops_the_others_and_names_the_cause() -> None:
    journal: list[str] = []
    app = App(
        "svc",
        servers=[RecordingServer("good", journal), RecordingServer("bad", journal, fail=True)],
        resources=[Resource(journal)],
        after_start=[hook(journal, "after start")],
        handle_signals=False,
    )
    with pytest.raises(AppStartError, match=r"RecordingServer\(bad\).*cannot bind"):
        await app.run()
    assert "after start" not in journal
    assert "good serving=True" not in journal
    assert journal[-3:] == ["stop bad", "stop good", "resource close"]


async def test_failing_after_start_hook_stops_what_started() -> None:
    journal: list[str] = []

    async def broken() -> None:
        raise RuntimeError("registration failed")

    app = App(
        "svc",
        servers=[RecordingServer("a", journal)],
        resources=[Resource(journal)],
        after_start=[broken],
        handle_signals=False,
    )
    with pytest.raises(RuntimeError, match="registration failed"):
        async with app:
            pytest.fail("the body must not run when starting failed")
    assert journal[-3:] == ["a serving=False", "stop a", "resource close"]
    assert app_info() is None


def test_main_exits_non_zero_on_start_failure(caplog: pytest.LogCaptureFixture) -> None:
    app = App("svc", servers=[RecordingServer("bad", [], fail=True)], handle_signals=False)
    assert app.main() == 1
    assert "svc failed to start" in caplog.text and "bad cannot bind" in caplog.text


async def test_stop_timeout_is_shared_and_a_hanging_server_does_not_block_the_rest() -> None:
    journal: list[str] = []
    slow = RecordingServer("slow", journal, stop_delay=30)
    fast = RecordingServer("fast", journal)
    app = App("svc", servers=[fast, slow], stop_timeout=0.3, handle_signals=False)
    await app.start()
    started = asyncio.get_running_loop().time()
    await app.shutdown()
    elapsed = asyncio.get_running_loop().time() - started
    assert elapsed < 5
    assert slow.stopped_with is not None and slow.stopped_with <= 0.3
    assert "stop fast" in journal and "stop slow" not in journal


def test_invalid_stop_timeout() -> None:
    with pytest.raises(ValueError, match="stop_timeout"):
        App("svc", stop_timeout=0)


def test_main_reports_a_failing_before_start_hook_and_exits_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []

    def migrate() -> None:
        raise ValueError("schema is newer than the code")

    app = App("svc", servers=[RecordingServer("a", journal)], before_start=[migrate],
              handle_signals=False)
    assert app.main() == 1
    assert "before-start hook" in caplog.text and "schema is newer" in caplog.text
    assert "start a" not in journal
