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

The scheduling itself (turns, fairness, close) is :class:`framework.broker.lanes.LaneScheduler`,
shared with the memory broker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

from framework.broker.lanes import Lane as _Lane
from framework.broker.lanes import LaneScheduler
from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.options import Ordering

__all__ = ["Chunk", "Lane", "Lanes"]

#: Records of one partition, in offset order, with the partition's offset tracker.
Chunk = tuple[PartitionOffsets, list[Any]]
#: A lane of chunks.
Lane: TypeAlias = _Lane[Chunk]


class Lanes(LaneScheduler[Chunk]):
    """Routes fetched records to lanes and hands ready lanes to the workers.

    Workers call :meth:`take` for a lane (``None``: stop), work on its chunks, then
    :meth:`release` it. :meth:`close` makes every worker return ``None`` once the lanes
    queued before it are taken.
    """

    def __init__(self, concurrency: int, ordering: Ordering) -> None:
        super().__init__()
        self.concurrency = max(1, concurrency)
        self.ordering = ordering
        self.by_key = ordering == "key"

    def assign(self, partitions: Iterable[Any]) -> None:
        """A new assignment: with ``"auto"`` ordering, choose partition or key lanes."""
        if self.ordering == "auto":
            self.by_key = self.concurrency > len(list(partitions))

    def route(self, tp: Any, state: PartitionOffsets, records: list[Any]) -> None:
        """Queue ``records`` (one partition, offset order) on their lane(s)."""
        if not self.by_key:
            self.put((tp, None), (state, records))
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
                self.put((tp, bucket), (state, lane_records))
