"""Watching config keys: per-key debounced callbacks, and the file watcher that reloads.

:class:`WatchRegistry` remembers which keys opted in and calls their callbacks, after a quiet
period, only when their value really changed. :class:`ConfigWatcher` watches the source files
with :func:`watchfiles.awatch`, reloads on change and lets the registry compare; it has
``async start()`` / ``async close()`` so it can be handed to an :class:`~framework.App` as a
resource. A reload that fails (bad YAML, a missing variable, a value the config's scanned
models refuse) is logged at ERROR, naming the file, line and key, and the previous values stay
in force.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchfiles import awatch

from framework.config.errors import ConfigError

__all__ = ["ConfigWatcher", "WatchCallback", "WatchRegistry"]

#: Receives the key's new value (``None`` if the key disappeared); sync or async.
WatchCallback = Callable[[Any], Awaitable[None] | None]
_log = logging.getLogger("pykratos.config")
_MISSING: Any = object()


@dataclass(eq=False, slots=True)
class _Watch:
    key: str
    callback: WatchCallback
    debounce: float
    seen: Any  # value at the latest reload
    delivered: Any  # value the callback last got (or the value at registration)
    timer: asyncio.Task[None] | None = field(default=None)


class WatchRegistry:
    """The watched keys of one config and their debounce timers.

    Args:
        lookup: reads the current value of a dotted key, returning its ``default`` argument
            when the key is absent.
    """

    def __init__(self, lookup: Callable[[str, Any], Any]) -> None:
        self._lookup = lookup
        self._watches: list[_Watch] = []

    def add(self, key: str, callback: WatchCallback, debounce: float) -> Callable[[], None]:
        """Watch ``key``; returns a function that removes this watch."""
        if debounce < 0:
            raise ValueError(f"debounce must be >= 0, got {debounce}")
        current = self._lookup(key, _MISSING)
        watch = _Watch(key, callback, debounce, current, current)
        self._watches.append(watch)

        def remove() -> None:
            if watch in self._watches:
                self._watches.remove(watch)
            if watch.timer is not None:
                watch.timer.cancel()

        return remove

    def check(self) -> None:
        """Compare every watched key with the current config (after a reload).

        A changed key (re)starts its timer, so a burst of edits ends in one callback with
        the final value; must run inside the event loop.
        """
        for watch in self._watches:
            value = self._lookup(watch.key, _MISSING)
            if value == watch.seen:
                continue
            watch.seen = value
            if watch.timer is not None:
                watch.timer.cancel()
            watch.timer = asyncio.get_running_loop().create_task(
                self._fire(watch), name=f"config-watch:{watch.key}"
            )

    def cancel(self) -> None:
        """Drop pending (not yet fired) callbacks."""
        for watch in self._watches:
            if watch.timer is not None:
                watch.timer.cancel()
                watch.timer = None

    async def _fire(self, watch: _Watch) -> None:
        await asyncio.sleep(watch.debounce)
        watch.timer = None
        # An edit that was undone within the debounce window is no change at all.
        if watch.seen == watch.delivered:
            return
        watch.delivered = watch.seen
        value = None if watch.seen is _MISSING else copy.deepcopy(watch.seen)
        try:
            result = watch.callback(value)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _log.exception("config watch callback for %r failed", watch.key)


class ConfigWatcher:
    """Reloads a config when its files change and notifies the watched keys.

    Args:
        paths: directories to watch (a single-file source is watched through its directory,
            because editors and Kubernetes replace files rather than write them in place).
        reload: re-reads the sources and swaps the config's values; raises
            :class:`ConfigError` when the new files are invalid.
        registry: the watched keys to compare after each reload.
    """

    def __init__(
        self, paths: Sequence[Path], reload: Callable[[], None], registry: WatchRegistry
    ) -> None:
        self._paths = list(paths)
        self._reload = reload
        self._registry = registry
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the watch task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start watching; returns once file events are being collected.

        Also reloads once, so an edit made between loading and starting is not missed.
        """
        if self.running:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="config-watcher")
        # awatch() registers its inotify watches synchronously on its first step, before
        # handing the wait to a thread; one pass of the loop lets the task get that far.
        await asyncio.sleep(0)
        if self._task.done():
            self._task.result()  # a watch that could not even start raises here
        await self._reload_and_check()

    async def close(self) -> None:
        """Stop watching and drop pending callbacks; safe to call twice or before start."""
        task, self._task = self._task, None
        self._registry.cancel()
        if task is None:
            return
        self._stop.set()
        # The watch thread sees the stop event within one step (50 ms).
        done, _ = await asyncio.wait({task}, timeout=5.0)
        if not done:
            task.cancel()
            _log.warning("config watcher did not stop within 5s; cancelled")

    async def _run(self) -> None:
        try:
            async for _changes in awatch(
                *self._paths, stop_event=self._stop, recursive=False, step=50
            ):
                await self._reload_and_check()
        except Exception:
            _log.exception("config watcher stopped")
            raise

    async def _reload_and_check(self) -> None:
        try:
            await asyncio.to_thread(self._reload)
        except ConfigError as exc:
            _log.error("config reload failed, keeping the previous values: %s", exc)
            return
        self._registry.check()
