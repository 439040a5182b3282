"""Ordered lanes shared by a pool of workers: per-lane order without head-of-line blocking.

A subscription with ``concurrency`` workers must keep the order of what shares an ordering
unit (a key, a partition) while a slow or blocked unit stalls nothing but itself. Fixed
worker queues (a key hashed to one worker's queue) fail the second half: everything hashed
behind a blocked message waits for it. Here work is queued on :class:`Lane`\\ s instead, and
the workers take turns on the lanes that have work, one worker per lane at a time:

* two items of one lane never overtake each other (only one worker holds a lane);
* a lane whose handler blocks holds one worker and nothing else; the other workers keep
  serving every other lane;
* a lane with more work after a worker's turn goes to the back of the ready queue, so busy
  lanes share the workers fairly.

Lanes exist only while they hold work. The memory broker (a lane per key) and the Kafka
subscription (a lane per partition or per partition and key bucket) both schedule with
:class:`LaneScheduler`; bounding how much is queued is the caller's job (per partition, so
one full partition never stops the others from being fetched).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Lane", "LaneScheduler"]

T = TypeVar("T")


class Lane(Generic[T]):
    """One ordered queue of work items; ``scheduled`` while it is ready or being worked on."""

    __slots__ = ("id", "queue", "scheduled")

    def __init__(self, lane_id: Hashable) -> None:
        self.id = lane_id
        self.queue: deque[T] = deque()
        self.scheduled = False


class LaneScheduler(Generic[T]):
    """Queues items on lanes and hands ready lanes to the workers.

    Workers call :meth:`take` for a lane (``None``: stop), work on its items, then
    :meth:`release` it. :meth:`close` makes every worker return ``None`` once the lanes
    queued before it are taken.
    """

    def __init__(self) -> None:
        self._lanes: dict[Hashable, Lane[T]] = {}
        self._ready: asyncio.Queue[Lane[T] | None] = asyncio.Queue()
        #: Set whenever work is queued (a batch worker waits on it to fill a batch).
        self.arrived = asyncio.Event()

    def put(self, lane_id: Hashable, item: T) -> None:
        """Queue ``item`` at the end of lane ``lane_id`` (made ready if it was idle)."""
        lane = self._lanes.get(lane_id)
        if lane is None:
            lane = self._lanes[lane_id] = Lane(lane_id)
        lane.queue.append(item)
        if not lane.scheduled:
            lane.scheduled = True
            self._ready.put_nowait(lane)
        self.arrived.set()

    async def take(self) -> Lane[T] | None:
        """The next lane with work (now owned by the caller), or ``None`` once closed."""
        return await self._ready.get()

    def take_nowait(self) -> Lane[T] | None:
        """A lane with work if one is ready now, else ``None`` (never the close marker)."""
        queue = self._ready
        if queue.empty():
            return None
        lane = queue.get_nowait()
        if lane is None:
            queue.put_nowait(None)  # the close marker is some worker's: put it back
        return lane

    async def wait_arrival(self, deadline: float) -> bool:
        """Wait until work is queued (or :meth:`close` is called), at most until ``deadline``
        (event-loop time, seconds). Returns False when the deadline passed first.

        A batch worker filling a batch calls it when no ready lane is left to take.
        """
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        self.arrived.clear()
        try:
            async with asyncio.timeout(remaining):
                await self.arrived.wait()
        except TimeoutError:
            return False
        return True

    def release(self, lane: Lane[T], *, keep: bool = False) -> bool:
        """The caller's turn on ``lane`` is over. Returns True when it still has work and
        ``keep`` (the caller goes on with it: when closing, lanes queued after the close
        marker would never be taken); otherwise it goes back to the ready queue or, empty,
        is dropped."""
        if lane.queue:
            if keep:
                return True
            self._ready.put_nowait(lane)
            return False
        lane.scheduled = False
        if self._lanes.get(lane.id) is lane:
            del self._lanes[lane.id]
        return False

    def drop_queued(self) -> list[T]:
        """Remove and return every queued item that no worker holds yet (a stop that ran
        out of time); lanes that workers hold end with the item in hand."""
        dropped: list[T] = []
        for lane in self._lanes.values():
            dropped.extend(lane.queue)
            lane.queue.clear()
        ready = self._ready
        markers = 0
        while not ready.empty():
            if ready.get_nowait() is None:
                markers += 1
        # Held lanes are forgotten too: their workers' release() finds them empty. Nothing
        # may be put afterwards (a new lane for a held id would run beside it).
        self._lanes = {}
        for _ in range(markers):
            ready.put_nowait(None)
        return dropped

    def close(self, workers: int) -> None:
        """Tell ``workers`` workers to return once the lanes already queued are taken."""
        for _ in range(workers):
            self._ready.put_nowait(None)
        self.arrived.set()
