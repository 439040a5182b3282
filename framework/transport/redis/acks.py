"""Batched ``XACK`` of finished entries of one subscription.

``XACK`` names each entry id, so acknowledging a finished entry never settles an earlier
unfinished one (unlike a Kafka offset or an AMQP ``multiple`` ack): finished ids are simply
collected and sent together. The reader takes them and sends them in the same pipeline as
its next ``XREADGROUP`` (no extra round trip while busy); while the reader waits on an idle
stream, a timer sends them ``interval`` seconds after the first one finished, or at once when
``batch`` of them are waiting. A failed ``XACK`` puts its ids back: acknowledging twice is
harmless, the entry simply stays acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

__all__ = ["Acks"]

log = logging.getLogger("pykratos.redis")


class Acks:
    """Finished entry ids of one stream and group, waiting for their ``XACK``."""

    __slots__ = (
        "_batch",
        "_client",
        "_flushing",
        "_group",
        "_ids",
        "_interval",
        "_stream",
        "_timer",
    )

    def __init__(
        self, client: Redis, stream: str, group: str, *, batch: int, interval: float
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._batch = batch
        self._interval = interval
        self._ids: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, entry_id: str) -> None:
        """Record a finished entry; arm the timer, or flush now once ``batch`` are waiting."""
        ids = self._ids
        ids.append(entry_id)
        if len(ids) >= self._batch:
            self._flush_soon()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush_soon)

    def take(self) -> list[str]:
        """Every waiting id, for the caller to acknowledge (or :meth:`restore` on failure)."""
        ids, self._ids = self._ids, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return ids

    def restore(self, ids: list[str]) -> None:
        """Put back ids whose ``XACK`` failed: they are sent with the next flush."""
        self._ids[:0] = ids
        if ids and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Acknowledge every waiting id with one ``XACK`` (failures are retried later)."""
        ids = self.take()
        if not ids:
            return
        try:
            await self._client.xack(self._stream, self._group, *ids)
        except Exception as exc:  # connection lost: the reader's recovery logs it
            log.debug("XACK of %d ids on %s failed, retried later: %r", len(ids), self._stream, exc)
            self.restore(ids)

    async def close(self) -> None:
        """Send what is waiting (once, without retrying) and stop the timer."""
        task = self._flushing
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task
        ids = self.take()
        if ids:
            await self._client.xack(self._stream, self._group, *ids)
