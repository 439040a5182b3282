"""Ordered work lanes of a Kafka subscription and how records are routed to them.

A subscription runs ``spec.concurrency`` :class:`Worker` tasks. Each worker handles its queue
strictly in order, so two records routed to the same worker never overtake each other. The
:class:`Router` decides where a record goes:

* ``"partition"`` ordering: every record of a partition goes to the same worker (assigned
  partitions are spread round-robin over the workers): partition order is kept, and at most
  ``min(concurrency, assigned partitions)`` handlers run at once.
* ``"key"`` ordering: a keyed record goes to the worker of ``hash(key)``, a keyless one to
  its partition's worker: per-key order is kept (and per-partition order for keyless
  records); all ``concurrency`` workers can be busy even with a single partition.
  Completions inside one partition are then out of order, which the offset tracker absorbs.
* ``"auto"``: ``"partition"`` while ``concurrency`` <= assigned partitions, else ``"key"``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.options import Ordering

__all__ = ["Chunk", "Router", "Worker"]

#: Records of one partition, in offset order, with the partition's offset tracker.
Chunk = tuple[PartitionOffsets, list[Any]]


class Worker:
    """One ordered lane: a FIFO of chunks and a wake-up event."""

    __slots__ = ("index", "queue", "task", "wake")

    def __init__(self, index: int) -> None:
        self.index = index
        self.queue: deque[Chunk] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def put(self, chunk: Chunk) -> None:
        """Queue ``chunk`` behind this lane's earlier ones and wake the worker."""
        self.queue.append(chunk)
        self.wake.set()


class Router:
    """Routes fetched records of the current assignment to workers."""

    def __init__(self, workers: list[Worker], ordering: Ordering) -> None:
        self.workers = workers
        self.ordering = ordering
        self.by_key = ordering == "key"
        self._home: dict[Any, Worker] = {}  # TopicPartition -> worker of its keyless records

    def assign(self, partitions: Iterable[Any]) -> None:
        """Recompute routes for a new assignment (sorted, so the spread is deterministic)."""
        workers = self.workers
        ordered = sorted(partitions)
        self._home = {tp: workers[i % len(workers)] for i, tp in enumerate(ordered)}
        if self.ordering == "auto":
            self.by_key = len(workers) > len(ordered)

    def route(self, tp: Any, state: PartitionOffsets, records: list[Any]) -> None:
        """Queue ``records`` (one partition, offset order) on their worker(s)."""
        home = self._home[tp]
        if not self.by_key:
            home.put((state, records))
            return
        workers = self.workers
        count = len(workers)
        split: dict[Worker, list[Any]] = {}
        for record in records:
            key = record.key
            worker = home if key is None else workers[hash(key) % count]
            lane = split.get(worker)
            if lane is None:
                split[worker] = [record]
            else:
                lane.append(record)
        for worker, lane in split.items():
            worker.put((state, lane))
