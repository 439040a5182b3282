"""Ordered lanes of a Kafka subscription, and how records are routed to them.

Records are queued on :class:`Lane`\\ s; ``spec.concurrency`` worker tasks take turns on the
lanes that have work (:class:`Lanes`), one worker per lane at a time, so two records of one
lane never overtake each other, while a lane whose handler is slow (or blocked) holds one
worker and nothing else: the other workers keep serving every other lane. Which lane a record
goes to depends on the ordering:

* ``"partition"``: one lane per partition: partition order is kept, and at most
  ``min(concurrency, assigned partitions)`` handlers run at once.
* ``"key"``: a keyed record goes to the lane of ``(partition, hash(key) % concurrency)``, a
  keyless one to its partition's own lane: per-key order is kept (and per-partition order for
  keyless records); all ``concurrency`` workers can be busy even with a single partition.
  Completions inside one partition are then out of order, which the offset tracker absorbs.
* ``"auto"``: ``"partition"`` while ``concurrency`` <= assigned partitions, else ``"key"``.

A lane with more work after a worker's turn goes to the back of the ready queue, so busy
lanes share the workers fairly. Lanes exist only while they hold work.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.options import Ordering

__all__ = ["Chunk", "Lane", "Lanes"]

#: Records of one partition, in offset order, with the partition's offset tracker.
Chunk = tuple[PartitionOffsets, list[Any]]


class Lane:
    """One ordered queue of chunks; ``scheduled`` while it is ready or being worked on."""

    __slots__ = ("id", "queue", "scheduled")

    def __init__(self, lane_id: Any) -> None:
        self.id = lane_id
        self.queue: deque[Chunk] = deque()
        self.scheduled = False


class Lanes:
    """Routes fetched records to lanes and hands ready lanes to the workers.

    Workers call :meth:`take` for a lane (``None``: stop), work on its chunks, then
    :meth:`release` it. :meth:`close` makes every worker return ``None`` once the lanes
    queued before it are taken.
    """

    def __init__(self, concurrency: int, ordering: Ordering) -> None:
        self.concurrency = max(1, concurrency)
        self.ordering = ordering
        self.by_key = ordering == "key"
        self._lanes: dict[Any, Lane] = {}
        self._ready: asyncio.Queue[Lane | None] = asyncio.Queue()
        #: Set whenever records are routed (a batch worker waits on it to fill a batch).
        self.arrived = asyncio.Event()

    def assign(self, partitions: Iterable[Any]) -> None:
        """A new assignment: with ``"auto"`` ordering, choose partition or key lanes."""
        if self.ordering == "auto":
            self.by_key = self.concurrency > len(list(partitions))

    def route(self, tp: Any, state: PartitionOffsets, records: list[Any]) -> None:
        """Queue ``records`` (one partition, offset order) on their lane(s)."""
        if not self.by_key:
            self._put((tp, None), (state, records))
        else:
            count = self.concurrency
            split: dict[Any, list[Any]] = {}
            for record in records:
                key = record.key
                bucket = None if key is None else hash(key) % count
                lane = split.get(bucket)
                if lane is None:
                    split[bucket] = [record]
                else:
                    lane.append(record)
            for bucket, lane_records in split.items():
                self._put((tp, bucket), (state, lane_records))
        self.arrived.set()

    def _put(self, lane_id: Any, chunk: Chunk) -> None:
        lane = self._lanes.get(lane_id)
        if lane is None:
            lane = self._lanes[lane_id] = Lane(lane_id)
        lane.queue.append(chunk)
        if not lane.scheduled:
            lane.scheduled = True
            self._ready.put_nowait(lane)

    async def take(self) -> Lane | None:
        """The next lane with work (now owned by the caller), or ``None`` once closed."""
        return await self._ready.get()

    def take_nowait(self) -> Lane | None:
        """A lane with work if one is ready now, else ``None`` (never the close marker)."""
        queue = self._ready
        if queue.empty():
            return None
        lane = queue.get_nowait()
        if lane is None:
            queue.put_nowait(None)  # the close marker is some worker's: put it back
        return lane

    def release(self, lane: Lane, *, keep: bool = False) -> bool:
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
        del self._lanes[lane.id]
        return False

    def close(self, workers: int) -> None:
        """Tell ``workers`` workers to return once the lanes already queued are taken."""
        for _ in range(workers):
            self._ready.put_nowait(None)
        self.arrived.set()
