"""The partitions a Kafka group member owns, and the revoked ones still finishing.

On a rebalance aiokafka first revokes partitions (and awaits the member's callback), then
assigns the new set. A revoked partition is closed (:meth:`PartitionOffsets.close`): no
message at or beyond the highest one started is started any more, while the messages in
flight and the unstarted ones below it (gaps left by per-key workers) get
``rebalance_drain_timeout`` seconds to finish, so that the commit that follows covers them and
the next owner does not handle them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import TopicPartition

from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.workers import Lanes

__all__ = ["Assignment"]

_log = logging.getLogger("pykratos.kafka")


class Assignment:
    """The owned partitions (``partitions``, updated in place) and the revoked ones draining.

    Args:
        router: the subscription's lanes, told of every assignment.
        label: the subscriber, as logs name it.
        drain_timeout: seconds :meth:`revoke` waits for in-flight messages.
    """

    def __init__(self, router: Lanes, label: str, drain_timeout: float) -> None:
        self.partitions: dict[TopicPartition, PartitionOffsets] = {}
        self._router = router
        self._label = label
        self._drain_timeout = drain_timeout
        self._drains: dict[PartitionOffsets, asyncio.Event] = {}  # revoked, still finishing

    def assign(self, assigned: Iterable[TopicPartition]) -> None:
        """Track the partitions of a new assignment and route them to the workers."""
        partitions = self.partitions
        for tp in assigned:
            if tp not in partitions:
                partitions[tp] = PartitionOffsets(tp)
        self._router.assign(partitions)

    async def revoke(
        self, revoked: Iterable[TopicPartition]
    ) -> list[tuple[TopicPartition, PartitionOffsets]]:
        """Close the ``revoked`` partitions and wait (within the drain timeout) until what
        they started finished; return them, to be committed."""
        states = [(tp, self.partitions.pop(tp)) for tp in revoked if tp in self.partitions]
        draining = []
        for _, state in states:
            state.close()
            if not state.drained():
                draining.append(self._drains.setdefault(state, asyncio.Event()).wait())
        if draining:
            try:
                async with asyncio.timeout(self._drain_timeout):
                    await asyncio.gather(*draining)
            except TimeoutError:
                _log.warning(
                    "%s: in-flight messages of revoked partitions did not finish within "
                    "%.1fs; the new owner will process them again",
                    self._label,
                    self._drain_timeout,
                )
        for _, state in states:
            self._drains.pop(state, None)
        return states

    def check_drained(self, state: PartitionOffsets) -> None:
        """A message of the closed partition ``state`` finished: it may be drained now."""
        event = self._drains.get(state)
        if event is not None and state.drained():
            event.set()

    def close(self) -> None:
        """Close every owned partition (the subscription is stopping)."""
        for state in self.partitions.values():
            state.close()  # workers still fill the gaps below what already started
