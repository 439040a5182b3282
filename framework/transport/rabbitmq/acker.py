"""Batched, gap-aware acknowledgements for one AMQP channel.

Delivery tags are per channel and grow by one per delivery. A ``basic.ack`` with
``multiple=True`` settles *every* outstanding tag up to the one given, so it is only safe up
to the highest tag below which every delivery has finished: acking past an unfinished
message would lose it if the process died. :class:`Acker` tracks that contiguous prefix and
acks it with a single frame once ``batch`` deliveries finished or ``interval`` seconds
passed. Finished deliveries beyond a gap (a slow message ahead of them) are acked one by one
when the gap persists, so one slow handler cannot starve the prefetch window.

A new :class:`Acker` is made per channel: after a reconnect the tags restart at 1 and the
old channel's unacked deliveries are redelivered by the broker anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiormq.abc
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

__all__ = ["Acker"]

log = logging.getLogger("pykratos.rabbitmq")

# Acks on a channel that just closed fail; the broker requeues those deliveries itself.
_CLOSED_ERRORS = (ChannelInvalidStateError, AMQPError, ConnectionError)


class Acker:
    """Acknowledges finished deliveries of one channel (see the module docstring)."""

    __slots__ = (
        "_acked",
        "_ahead",
        "_batch",
        "_contig",
        "_flush_task",
        "_interval",
        "_mark",
        "_pending",
        "_settled",
        "_timer",
        "channel",
    )

    def __init__(self, channel: aiormq.abc.AbstractChannel, *, batch: int, interval: float):
        self.channel = channel
        self._batch = max(1, batch)
        self._interval = interval
        self._acked = 0  # every tag <= _acked is settled on the broker
        self._contig = 0  # every tag <= _contig has finished
        self._mark = 0  # highest not-individually-settled tag in (_acked, _contig]
        self._ahead: set[int] = set()  # finished tags beyond a gap (> _contig + 1)
        self._settled: set[int] = set()  # tags > _acked already settled one by one
        self._pending = 0  # finished, not yet settled
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        """True once this acker's channel is closed (its deliveries will be redelivered)."""
        return bool(self.channel.is_closed)

    @property
    def pending(self) -> int:
        """Finished deliveries whose ack has not been sent yet."""
        return self._pending

    def finished(self, tag: int) -> bool:
        """Record that delivery ``tag`` finished; True when a flush is due now."""
        if tag == self._contig + 1:  # the common, in-order case: O(1)
            self._contig = tag
            self._mark = tag
            if self._ahead:
                self._advance()
        else:
            self._ahead.add(tag)
        self._pending += 1
        if self._pending >= self._batch:
            return True
        if self._timer is None:
            self._arm()
        return False

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._on_timer)

    def settled(self, tag: int) -> None:
        """Record that the caller settled ``tag`` itself (e.g. a nack): never ack it again."""
        self._settled.add(tag)
        if tag == self._contig + 1:
            self._contig = tag
            if self._ahead:
                self._advance()
        else:
            self._ahead.add(tag)

    def _advance(self) -> None:
        ahead, settled = self._ahead, self._settled
        nxt = self._contig + 1
        while nxt in ahead:
            ahead.discard(nxt)
            if nxt not in settled:
                self._mark = nxt
            nxt += 1
        self._contig = nxt - 1

    def _on_timer(self) -> None:
        self._timer = None
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.ensure_future(self.flush(everything=True))

    async def flush(self, *, everything: bool = False) -> None:
        """Send the acks that are safe now.

        The contiguous finished prefix is acked with one ``multiple=True`` frame. Finished
        deliveries past a gap are acked individually when ``everything`` (timer, stop) or
        when they alone fill a batch.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        frames: list[tuple[int, bool]] = []
        # State is updated before the first await so a concurrent flush never re-acks a tag
        # (a second ack of a tag is a channel error that would close the channel).
        if self._contig > self._acked:
            if self._mark > self._acked:
                frames.append((self._mark, True))
            self._acked = self._contig
            if self._settled:
                self._settled = {t for t in self._settled if t > self._acked}
        loose = self._ahead - self._settled if self._ahead else set()
        if loose and (everything or len(loose) >= self._batch):
            frames.extend((tag, False) for tag in sorted(loose))
            self._settled |= loose
            loose = set()
        self._pending = len(loose)
        if loose:  # the gap may persist: ack them one by one within the interval
            self._arm()
        if not frames:
            return
        try:
            for tag, multiple in frames:
                await self.channel.basic_ack(tag, multiple=multiple, wait=False)
        except _CLOSED_ERRORS as exc:
            log.debug("ack on a closed channel skipped (the broker redelivers): %s", exc)

    async def close(self) -> None:
        """Flush everything that finished and stop the timer."""
        await self.flush(everything=True)
        task = self._flush_task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task
