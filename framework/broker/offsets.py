"""Unfinished offsets of one partition: how far a commit may go without skipping a message.

Messages of a partition are handed out in offset order but may finish in any order
(concurrent workers, per-key lanes). A commit says "everything before this offset is done",
so committing the offset of the last *finished* message (what go-queue and kratos-transport
do with concurrent workers) silently skips any earlier message still running or failed.
:class:`InFlightOffsets` remembers every handed-out offset until it finished and reports the
lowest unfinished one, so a crash can redeliver messages but never lose one. The memory
broker's cursors and the Kafka subscription's partitions both build on it.
"""

from __future__ import annotations

from collections import deque

__all__ = ["InFlightOffsets"]


class InFlightOffsets:
    """Offsets handed out in ascending order (appended to ``_pending`` by subclasses) and
    finished in any order."""

    __slots__ = ("_done", "_pending")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # handed out, not finished, in offset order
        self._done: set[int] = set()  # finished out of order, still behind an unfinished one

    def finish(self, offset: int) -> bool:
        """Mark ``offset`` finished (handled, or dead-lettered); True when the lowest
        unfinished offset moved."""
        pending = self._pending
        if pending and pending[0] == offset:
            pending.popleft()
            done = self._done
            if done:
                # Earlier out-of-order completions may now be contiguous.
                while pending and pending[0] in done:
                    done.discard(pending.popleft())
            return True
        self._done.add(offset)
        return False

    @property
    def outstanding(self) -> int:
        """How many handed-out offsets are not finished."""
        return len(self._pending)

    def forget(self) -> None:
        """Drop every unfinished offset (they will be handed out again)."""
        self._pending.clear()
        self._done.clear()
