"""Back-pressure of a Kafka subscription's fetch loop, per partition.

Fetched records wait in the workers' lanes; at most ``max_buffered`` of them (counted over the
partitions that are not paused) before the fetch loop stops calling ``getmany``. That is the
cheap path of a healthy drain: aiokafka keeps what it already fetched, and the loop goes on as
soon as the workers freed half of the buffer.

A partition whose handler is slow or blocked would keep the buffer full forever, and with it
every other partition (aiokafka fetches nothing more from a broker while records it fetched
for any partition are not consumed). So when the buffer stays full for ``pause_after`` seconds,
every partition holding at least its fair share (``max_buffered`` / assigned partitions) is
paused (``consumer.pause``: aiokafka stops fetching it and drops what it prefetched for it),
its records no longer count against the buffer, and fetching goes on for the others. A paused
partition is resumed once its own backlog fell to half its share.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from framework.transport.kafka.offsets import PartitionOffsets

__all__ = ["Backpressure"]

_log = logging.getLogger("pykratos.kafka")


class Backpressure:
    """Counts buffered records and pauses/resumes partitions (see the module docstring).

    Args:
        partitions: the owned partitions (the subscription's, updated in place).
        limit: ``max_buffered``.
        pause_after: seconds the buffer may stay full before the partitions filling it are
            paused.
        label: the subscriber, as logs name it.
    """

    def __init__(
        self,
        partitions: Mapping[Any, PartitionOffsets],
        *,
        limit: int,
        pause_after: float,
        label: str,
    ) -> None:
        self.consumer: Any = None  # the AIOKafkaConsumer, once joined
        self.buffered = 0  # records of unpaused partitions fetched and not through a worker
        self._partitions = partitions
        self._limit = limit
        self._resume_at = max(1, limit // 2)
        self._pause_after = pause_after
        self._label = label
        self._room = asyncio.Event()
        self._paused: dict[PartitionOffsets, int] = {}  # -> resume at or below this backlog

    async def wait_for_room(self) -> None:
        """Return once the buffer has room, pausing the partitions that keep it full."""
        while self.buffered >= self._limit:
            self._room.clear()
            try:
                async with asyncio.timeout(self._pause_after):
                    await self._room.wait()
            except TimeoutError:
                self._pause_the_largest()

    def added(self, state: PartitionOffsets, count: int) -> None:
        """``count`` records of ``state``'s partition were fetched and routed."""
        state.buffered += count
        if state.paused:  # records fetched just before the pause took effect
            return
        self.buffered += count

    def released(self, state: PartitionOffsets, count: int) -> None:
        """``count`` records of ``state``'s partition left the workers."""
        state.buffered -= count
        if not state.paused:
            self.buffered -= count
            if self.buffered < self._resume_at:
                self._room.set()
            return
        if state.buffered > self._paused.get(state, 0):
            return
        del self._paused[state]
        state.paused = False
        self.buffered += state.buffered
        consumer = self.consumer
        # A revoked partition is not ours to resume (its next owner starts unpaused).
        if consumer is not None and self._partitions.get(state.tp) is state:
            consumer.resume(state.tp)
            _log.info(
                "%s: partition %s caught up, fetching it again", self._label, state.tp.partition
            )

    def _pause_the_largest(self) -> None:
        share = max(1, self._limit // max(1, len(self._partitions)))
        for tp, state in self._partitions.items():
            if state.paused or state.buffered < share:
                continue
            state.paused = True
            self._paused[state] = share // 2
            self.buffered -= state.buffered
            if self.consumer is not None:
                self.consumer.pause(tp)
            _log.warning(
                "%s: partition %s has %d records waiting for its handler for %.1fs; pausing "
                "it so that the other partitions keep flowing",
                self._label,
                tp.partition,
                state.buffered,
                self._pause_after,
            )
        if self.buffered < self._resume_at:
            self._room.set()
