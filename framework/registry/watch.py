"""A :class:`~framework.registry.contract.Watcher` fed by its registry: the shared part of
every implementation (latest list + "changed" event, no polling on the reader's side)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from framework.registry.instance import ServiceInstance

__all__ = ["ListWatcher", "watcher_fed_by"]


class ListWatcher:
    """Holds the latest instance list; :meth:`next` returns it when it changed.

    The registry calls :meth:`update`; ``on_stop`` lets it release what fed this watcher.
    """

    def __init__(self, on_stop: Callable[[ListWatcher], Awaitable[None]] | None = None) -> None:
        self._instances: list[ServiceInstance] | None = None
        self._changed = asyncio.Event()
        self._stopped = False
        self._on_stop = on_stop

    def update(self, instances: list[ServiceInstance]) -> None:
        """Publish a new full list (sorted by id so equal sets compare equal)."""
        ordered = sorted(instances, key=lambda i: i.id)
        if ordered == self._instances:
            return
        self._instances = ordered
        self._changed.set()

    async def next(self) -> list[ServiceInstance]:
        """The current list once it is known, then again each time it changes."""
        if self._stopped:
            raise asyncio.CancelledError("watcher stopped")
        await self._changed.wait()
        if self._stopped:
            raise asyncio.CancelledError("watcher stopped")
        self._changed.clear()
        return list(self._instances or ())

    async def stop(self) -> None:
        """Stop; wakes a pending :meth:`next`, which raises ``CancelledError``."""
        if self._stopped:
            return
        self._stopped = True
        self._changed.set()
        if self._on_stop is not None:
            await self._on_stop(self)


def watcher_fed_by(
    feed: Callable[[ListWatcher], Coroutine[Any, Any, None]],
) -> tuple[ListWatcher, asyncio.Task[None]]:
    """A :class:`ListWatcher` and the task running ``feed(watcher)``, which updates it;
    stopping the watcher cancels the task and waits for it to end."""
    task: asyncio.Task[None] | None = None

    async def stop(_: ListWatcher) -> None:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    watcher = ListWatcher(on_stop=stop)
    task = asyncio.create_task(feed(watcher))
    return watcher, task
