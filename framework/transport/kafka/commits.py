"""Offset commits of a Kafka subscription: when to commit, and committing safely.

Each partition's :class:`~framework.transport.kafka.offsets.PartitionOffsets` says how far a
commit may go (never past an unfinished message); the :class:`Committer` decides when: every
``commit_interval`` seconds, as soon as ``commit_every`` messages finished since the last
commit, when partitions are revoked, and a final time on stop (bounded in time). A failed
commit is logged and left to the next one: an offset not committed only means redelivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from framework.transport.kafka.offsets import PartitionOffsets

__all__ = ["Committer"]

_log = logging.getLogger("pykratos.kafka")
# A stop must not hang on a dead broker.
_FINAL_COMMIT_TIMEOUT = 5.0


class Committer:
    """Commits the offsets of one consumer group member.

    Args:
        label: the subscriber, as logs name it.
        group_id: the consumer group, for logs.
        interval: seconds between two commits of :meth:`run`.
        every: finished messages (reported with :meth:`finished`) that bring a commit forward.
    """

    def __init__(self, label: str, group_id: str, *, interval: float, every: int) -> None:
        self._label = label
        self._group_id = group_id
        self._interval = interval
        self._every = every
        self._finished = 0  # messages finished since the last scheduled commit
        self._due = asyncio.Event()
        self._lock = asyncio.Lock()  # one commit at a time: offsets only move forward

    def finished(self, count: int) -> None:
        """``count`` more messages finished: commit early once ``every`` have."""
        self._finished += count
        if self._finished >= self._every:
            self._due.set()

    async def run(
        self, consumer: AIOKafkaConsumer, partitions: Mapping[TopicPartition, PartitionOffsets]
    ) -> None:
        """Commit ``partitions`` (read anew each time: it follows the assignment) on schedule,
        until cancelled."""
        due = self._due
        while True:
            try:
                async with asyncio.timeout(self._interval):
                    await due.wait()
            except TimeoutError:
                pass
            due.clear()
            self._finished = 0
            await self.commit(consumer, list(partitions.items()))

    async def commit(
        self,
        consumer: AIOKafkaConsumer | None,
        states: Iterable[tuple[TopicPartition, PartitionOffsets]],
    ) -> None:
        """Commit every partition of ``states`` that progressed (nothing without a consumer)."""
        if consumer is None:
            return
        async with self._lock:
            offsets = {}
            for tp, state in states:
                offset = state.to_commit()
                if offset is not None:
                    offsets[tp] = (state, offset)
            if not offsets:
                return
            try:
                await consumer.commit({tp: offset for tp, (_, offset) in offsets.items()})
            except (KafkaError, OSError) as exc:
                # Not committed is safe (redelivery); the next commit carries the offsets.
                _log.warning(
                    "%s: offset commit for group %r failed: %r", self._label, self._group_id, exc
                )
                return
            for state, offset in offsets.values():
                state.committed = offset

    async def commit_final(
        self,
        consumer: AIOKafkaConsumer | None,
        states: Iterable[tuple[TopicPartition, PartitionOffsets]],
    ) -> None:
        """:meth:`commit`, given up (with a warning) after a few seconds."""
        try:
            async with asyncio.timeout(_FINAL_COMMIT_TIMEOUT):
                await self.commit(consumer, states)
        except TimeoutError:
            _log.warning(
                "%s: final commit for group %r timed out; finished messages since the last "
                "commit will be redelivered",
                self._label,
                self._group_id,
            )
