"""Per-partition offset tracking: what may be committed without skipping a message.

A Kafka commit says "everything before this offset is done". Committing the offset of the
last *finished* message (what go-queue and kratos-transport do with concurrent workers)
silently skips any earlier message that is still running or failed. :class:`PartitionOffsets`
instead remembers every handed-out offset in fetch order and only ever reports the lowest
unfinished one, so a crash can redeliver messages but never lose one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["PartitionOffsets"]


class PartitionOffsets:
    """The offsets of one assigned partition: handed out, finished and committed.

    ``track`` is called in fetch (offset) order; ``finish`` in any order. ``committable``
    is the offset to commit: the lowest handed-out offset not finished yet, or one past the
    highest finished offset when nothing is outstanding.
    """

    __slots__ = ("_done", "_last", "_pending", "committed", "started", "stop_at")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # handed out, not finished, in offset order
        self._done: set[int] = set()  # finished out of order, still behind an unfinished one
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

    def finish(self, offset: int) -> None:
        """Mark ``offset`` finished (handled, or dead-lettered)."""
        pending = self._pending
        if pending and pending[0] == offset:
            pending.popleft()
            done = self._done
            if done:
                # Earlier out-of-order completions may now be contiguous.
                while pending and pending[0] in done:
                    done.discard(pending.popleft())
        else:
            self._done.add(offset)

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

    @property
    def outstanding(self) -> int:
        """How many handed-out offsets are not finished."""
        return len(self._pending)

    def to_commit(self) -> int | None:
        """``committable`` if it moved past ``committed``, else ``None``."""
        offset = self.committable
        if offset is None or (self.committed is not None and offset <= self.committed):
            return None
        return offset
