"""Per-partition offset tracking of a Kafka subscription: what may be committed.

:class:`PartitionOffsets` is an :class:`~framework.broker.offsets.InFlightOffsets` (a commit
never passes an unfinished message) that also knows what was fetched, started and committed,
and where a revoked or stopping partition stops starting messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from framework.broker.offsets import InFlightOffsets

__all__ = ["PartitionOffsets"]


class PartitionOffsets(InFlightOffsets):
    """The offsets of one assigned partition: handed out, finished and committed.

    ``track`` is called in fetch (offset) order; ``finish`` in any order. ``committable``
    is the offset to commit: the lowest handed-out offset not finished yet, or one past the
    highest finished offset when nothing is outstanding.
    """

    __slots__ = ("_last", "buffered", "committed", "paused", "started", "stop_at", "tp")

    def __init__(self, tp: Any = None) -> None:
        super().__init__()
        self.tp = tp  # the TopicPartition
        # Fetched records not yet through a worker, and whether fetching is paused for
        # them (per-partition back-pressure, maintained by the subscription).
        self.buffered = 0
        self.paused = False
        self._last = -1  # highest offset handed out
        self.started = -1  # highest offset a worker started (maintained by the workers)
        self.committed: int | None = None  # last offset acknowledged by the broker
        # Set by close(): offsets at or beyond it must not be started any more.
        self.stop_at: int | None = None

    def track(self, offsets: Iterable[int]) -> None:
        """Hand out ``offsets`` (ascending, all above the previous ones)."""
        pending = self._pending
        before = len(pending)
        pending.extend(offsets)
        if len(pending) != before:
            self._last = pending[-1]

    def accepts(self, offset: int) -> bool:
        """False for an offset at or below one already handed out (a stale re-fetch)."""
        return offset > self._last

    def close(self) -> None:
        """Stop starting new offsets (partition revoked or subscription stopping).

        Unstarted offsets *below* the highest started one stay to be handled: with per-key
        workers they are gaps that would otherwise hold the commit below messages that
        already finished, and get those redelivered.
        """
        if self.stop_at is None:
            self.stop_at = self.started + 1

    def drained(self) -> bool:
        """After :meth:`close`: nothing below ``stop_at`` is unfinished any more."""
        stop_at = self.stop_at
        pending = self._pending
        return stop_at is not None and (not pending or pending[0] >= stop_at)

    @property
    def committable(self) -> int | None:
        """The offset a commit may reach now, or ``None`` before anything was handed out."""
        if self._pending:
            return self._pending[0]
        return self._last + 1 if self._last >= 0 else None

    def to_commit(self) -> int | None:
        """``committable`` if it moved past ``committed``, else ``None``."""
        offset = self.committable
        if offset is None or (self.committed is not None and offset <= self.committed):
            return None
        return offset
