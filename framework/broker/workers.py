"""A fixed pool of subscription workers, one inbox each: choosing the inbox, batching, stopping.

The Redis, RabbitMQ, MQTT and NATS subscriptions run ``spec.concurrency`` workers, each
draining its own :class:`asyncio.Queue`. A message with a key always goes to the same
worker (a stable CRC-32 of the key, the same in every process), so messages with one key
never overtake each other; keyless messages go round-robin. ``None`` in an inbox tells its
worker to end once the messages queued before it are handled. A batch worker fills its
batch with :func:`fill_batch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["WorkerChooser", "fill_batch", "stop_workers", "worker_for"]

T = TypeVar("T")


def worker_for(key: bytes, workers: int) -> int:
    """The worker (0-based) that handles messages with ``key``: a stable hash (CRC-32, not
    the per-process salted ``hash``), so the mapping is the same in every process."""
    return zlib.crc32(key) % workers


class WorkerChooser:
    """Picks a message's worker: by :func:`worker_for` of its key, round-robin without one."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def __call__(self, key: bytes | None, workers: int) -> int:
        """The worker (0-based, below ``workers``) for a message with ``key``."""
        if workers == 1:
            return 0
        if key is not None:
            return worker_for(key, workers)
        self._next = (self._next + 1) % workers
        return self._next


async def stop_workers(
    tasks: Sequence[asyncio.Task[None]],
    inboxes: Iterable[asyncio.Queue[Any]],
    timeout: float,
) -> int:
    """Queue ``None`` in every inbox (idle workers end; busy ones finish what was queued
    before it), wait up to ``timeout`` seconds for ``tasks``, cancel those still running and
    wait for them. Returns how many were cancelled."""
    for inbox in inboxes:
        inbox.put_nowait(None)
    if not tasks:
        return 0
    _, late = await asyncio.wait(tasks, timeout=max(timeout, 0.0))
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(late)


async def fill_batch(
    inbox: asyncio.Queue[T | None], batch: list[T], max_size: int, max_wait: float
) -> bool:
    """Append items from ``inbox`` to ``batch`` until it holds ``max_size`` items,
    ``max_wait`` seconds have passed, or the ``None`` stop marker is taken.

    Returns True when the marker was taken (it is not put back: the caller decides).
    """
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(loop.time() + max_wait):
            while len(batch) < max_size:
                item = inbox.get_nowait() if not inbox.empty() else await inbox.get()
                if item is None:
                    return True
                batch.append(item)
    return False
