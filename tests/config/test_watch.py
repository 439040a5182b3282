"""Watched keys: debounced callbacks on change, reloads from real file events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framework.app import App
from framework.config import Config, ConfigError, load
from framework.config.model import ConfigModel
from framework.config.watch import WatchRegistry

WAIT = 10.0  # generous bound for a busy 2-core machine; a passing run takes ~0.1-0.5 s


class Calls:
    """Records callback values; ``wait()`` returns at the first call."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.event = asyncio.Event()

    def __call__(self, value: Any) -> None:
        self.values.append(value)
        self.event.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.event.wait(), WAIT)


class ErrorLogged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()


@pytest.fixture
def errors() -> Iterator[ErrorLogged]:
    handler = ErrorLogged()
    logger = logging.getLogger("pykratos.config")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


CONFIG = "log:\n  level: {level}\nserver:\n  port: 8000\n"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    d.mkdir()
    write(d / "config.yaml", CONFIG.format(level="info"))
    return d


async def test_changed_key_fires_once_unchanged_key_never(conf: Path) -> None:
    cfg = load(conf, environ={})
    level, port = Calls(), Calls()
    cfg.watch("log.level", level, debounce=0.2)
    # A shorter debounce: had it been wrongly scheduled, it would fire before ``level`` does.
    cfg.watch("server.port", port, debounce=0.01)
    watcher = cfg.watcher()
    await watcher.start()
    try:
        write(conf / "config.yaml", CONFIG.format(level="debug"))
        write(conf / "config.yaml", CONFIG.format(level="warn"))
        await level.wait()
        assert level.values == ["warn"]
        assert port.values == []
        assert cfg.get("log.level") == "warn"
    finally:
        await watcher.close()
    assert not watcher.running


async def test_new_file_in_directory_is_merged_and_async_callback_awaited(conf: Path) -> None:
    cfg = load(conf, environ={})
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def on_change(value: Any) -> None:
        await got.put(value)

    cfg.watch("server", on_change, debounce=0.05)
    async with App("t", resources=[cfg.watcher()], handle_signals=False):
        assert cfg.watcher().running
        write(conf / "zz-override.json", '{"server": {"port": 9000}}')
        assert await asyncio.wait_for(got.get(), WAIT) == {"port": 9000}
    assert not cfg.watcher().running


async def test_bad_reload_keeps_old_values_and_names_the_file(
    conf: Path, errors: ErrorLogged
) -> None:
    cfg = load(conf, environ={})
    level = Calls()
    cfg.watch("log.level", level, debounce=0.05)
    watcher = cfg.watcher()
    await watcher.start()
    try:
        write(conf / "config.yaml", "log:\n  level: debug\n   bad: [\n")
        await asyncio.wait_for(errors.event.wait(), WAIT)
        assert f"{conf / 'config.yaml'}:3:" in errors.messages[0]
        assert "keeping the previous values" in errors.messages[0]
        assert cfg.get("log.level") == "info"
        # The watcher is still alive: a fixed file is picked up.
        write(conf / "config.yaml", CONFIG.format(level="error"))
        await level.wait()
        assert level.values == ["error"]
    finally:
        await watcher.close()


async def test_single_file_source_and_edit_before_start(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    write(path, CONFIG.format(level="info"))
    cfg = load(path, environ={})
    level = Calls()
    cfg.watch("log.level", level, debounce=0.0)
    write(path, CONFIG.format(level="debug"))  # before the watcher runs: start() catches up
    watcher = cfg.watcher()
    await watcher.start()
    try:
        await level.wait()
        assert level.values == ["debug"]
    finally:
        await watcher.close()
        await watcher.close()  # idempotent


class Values:
    """A stand-in config for driving the registry by hand."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def get(self, key: str, default: Any) -> Any:
        return self.values.get(key, default)


async def test_registry_burst_gives_one_call_with_the_last_value() -> None:
    values = Values(level="info")
    registry = WatchRegistry(values.get)
    calls = Calls()
    registry.add("level", calls, debounce=0.05)
    for level in ("debug", "warn", "error"):
        values.values["level"] = level
        registry.check()
    await calls.wait()
    assert calls.values == ["error"]


async def test_registry_undone_edit_and_removed_key() -> None:
    values = Values(level="info")
    registry = WatchRegistry(values.get)
    level, sentinel = Calls(), Calls()
    registry.add("level", level, debounce=0.01)
    registry.add("sentinel", sentinel, debounce=0.1)
    values.values.update(level="debug", sentinel=1)
    registry.check()
    values.values["level"] = "info"  # undone within the debounce window
    registry.check()
    await sentinel.wait()  # fires after ``level``'s window has long passed
    assert level.values == []
    del values.values["level"]
    registry.check()
    await level.wait()
    assert level.values == [None]


async def test_registry_remove_and_failing_callback(caplog: pytest.LogCaptureFixture) -> None:
    values = Values(a=1, b=1)
    registry = WatchRegistry(values.get)
    removed, ok = Calls(), Calls()

    def boom(value: Any) -> None:
        raise RuntimeError("callback bug")

    registry.add("a", boom, debounce=0.0)
    remove = registry.add("a", removed, debounce=0.0)
    registry.add("b", ok, debounce=0.05)
    remove()
    values.values.update(a=2, b=2)
    registry.check()
    await ok.wait()
    assert removed.values == []
    assert "config watch callback for 'a' failed" in caplog.text
    with pytest.raises(ValueError, match="debounce must be >= 0"):
        registry.add("a", ok, debounce=-1)


def test_config_reload_is_explicit(conf: Path) -> None:
    cfg: Config = load(conf, environ={})
    write(conf / "config.yaml", CONFIG.format(level="debug"))
    assert cfg.get("log.level") == "info"
    cfg.reload()
    assert cfg.get("log.level") == "debug"


# -- issue 8 item 14: a reload is held to the models the config was scanned with ----------


class HttpSection(ConfigModel):
    port: int = 8000


class ServerSection(ConfigModel):
    port: int = 8000
    http: HttpSection = HttpSection()


class LogSection(ConfigModel):
    level: str = "info"


class Strict(ConfigModel):
    log: LogSection = LogSection()
    server: ServerSection = ServerSection()


def replace(path: Path, text: str) -> None:
    """Write as editors and Kubernetes do (a new file renamed over the old one), so a reload
    never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: not a config source
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


BOGUS = "log:\n  level: debug\nserver:\n  port: 8000\n  http:\n    port: 1\n    bogus: 1\n"


def test_item14_reload_refuses_what_a_restart_would(conf: Path) -> None:
    cfg = load(conf, environ={})
    cfg.reload()  # nothing scanned yet: no rule to break
    cfg.scan(Strict)
    write(conf / "config.yaml", BOGUS)
    with pytest.raises(ConfigError) as info:
        cfg.reload()
    assert str(info.value) == (
        f"{conf / 'config.yaml'}:7: server.http.bogus: unknown key 'bogus'; valid: port"
    )
    assert cfg.get("log.level") == "info"  # the old values stay
    with pytest.raises(ConfigError):
        load(conf, environ={}).scan(Strict)  # ... exactly what a restart says


def test_item14_reload_checks_a_scanned_subtree_too(conf: Path) -> None:
    cfg = load(conf, environ={})
    cfg.value("server", ServerSection)
    write(conf / "config.yaml", "log:\n  level: debug\nserver:\n  port: x\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:4: server\.port: Input should be"):
        cfg.reload()
    write(conf / "config.yaml", "log:\n  level: debug\n")
    with pytest.raises(ConfigError, match=r": server: key not found$"):
        cfg.reload()
    assert cfg.get("log.level") == "info"


async def test_item14_watcher_logs_file_line_and_key_and_keeps_old_values(
    conf: Path, errors: ErrorLogged
) -> None:
    cfg = load(conf, environ={})
    cfg.scan(Strict)
    level = Calls()
    cfg.watch("log.level", level, debounce=0.05)
    watcher = cfg.watcher()
    await watcher.start()
    try:
        replace(conf / "config.yaml", BOGUS)  # log.level changes too, in a refused edit
        await asyncio.wait_for(errors.event.wait(), WAIT)
        assert errors.messages[0] == (
            "config reload failed, keeping the previous values: "
            f"{conf / 'config.yaml'}:7: server.http.bogus: unknown key 'bogus'; valid: port"
        )
        assert cfg.get("log.level") == "info"
        replace(conf / "config.yaml", CONFIG.format(level="error"))
        await level.wait()
        assert level.values == ["error"]  # never "debug" from the refused edit
    finally:
        await watcher.close()
