"""The storage side of :class:`~framework.broker.memory.MemoryBroker`: partitioned logs.

A topic has N :class:`Partition` logs (append-only, offsets from 0). Each consumer group has
one :class:`Cursor` per partition: the next offset to fetch, the offsets dispatched but not
finished (an :class:`~framework.broker.offsets.InFlightOffsets`), and so the *committed*
offset (everything before it finished). A partition forgets records once every group's cursor
has committed past them.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from dataclasses import dataclass
from typing import Any

from framework.broker.offsets import InFlightOffsets

__all__ = ["Cursor", "Partition", "Record", "Topic"]

# Deleting a list prefix moves the rest: trim in chunks unless the whole log is consumed.
_TRIM_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class Record:
    """One published message as stored (each delivery builds its own ``Message``)."""

    body: bytes
    key: bytes | None
    headers: dict[str, str]
    id: str
    timestamp: float


class Partition:
    """An append-only log with a wake-up for fetchers waiting at its end."""

    __slots__ = ("_waiters", "base", "cursors", "index", "log", "topic")

    def __init__(self, topic: str, index: int) -> None:
        self.topic = topic
        self.index = index
        self.log: list[Record] = []
        self.base = 0  # offset of log[0]
        self.cursors: list[Cursor] = []  # one per consumer group of the topic
        self._waiters: asyncio.Event | None = None

    @property
    def end(self) -> int:
        """The offset the next record will get."""
        return self.base + len(self.log)

    def append(self, record: Record) -> int:
        """Store ``record``, wake every waiting fetcher, return its offset."""
        offset = self.base + len(self.log)
        self.log.append(record)
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            waiters.set()
        return offset

    def get(self, offset: int) -> Record:
        """The record at ``offset`` (still retained: not below ``base``)."""
        return self.log[offset - self.base]

    async def wait(self) -> None:
        """Return once a record is appended (the caller re-checks its position)."""
        if self._waiters is None:
            self._waiters = asyncio.Event()
        await self._waiters.wait()

    def trim(self) -> None:
        """Forget records that every group has committed (none is forgotten without groups)."""
        if not self.cursors:
            return
        consumed = min(cursor.committed for cursor in self.cursors) - self.base
        if consumed > 0 and (consumed >= _TRIM_CHUNK or consumed == len(self.log)):
            del self.log[:consumed]
            self.base += consumed


class Cursor(InFlightOffsets):
    """One consumer group's progress in one partition.

    ``position`` is the next offset to fetch; ``committed`` the first dispatched offset not
    finished yet. ``inflight`` counts dispatched messages not yet finished *or dropped*, so a
    partition can be handed to another group member only once its old owner is idle.
    """

    __slots__ = ("_idle", "_room", "inflight", "owner", "partition", "position")

    def __init__(self, partition: Partition, position: int) -> None:
        super().__init__()
        self.partition = partition
        self.position = position
        self.inflight = 0
        self.owner: Any = None  # the group member fetching this partition
        self._idle: asyncio.Event | None = None
        self._room: asyncio.Event | None = None

    @property
    def committed(self) -> int:
        """The first offset not finished yet: everything before it is committed."""
        pending = self._pending
        return pending[0] if pending else self.position

    def dispatched(self, offset: int) -> None:
        """``offset`` was handed to a worker."""
        self._pending.append(offset)
        self.position = offset + 1
        self.inflight += 1

    def finish(self, offset: int) -> bool:
        """``offset`` finished (handled or dead-lettered): advance the commit if contiguous,
        and let the partition forget what every group committed."""
        if super().finish(offset):
            self.partition.trim()
            return True
        return False

    def release(self) -> None:
        """A dispatched message left the worker (finished, failed or dropped)."""
        self.inflight -= 1
        room = self._room
        if room is not None:
            self._room = None
            room.set()
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` dispatched messages are queued or running (the
        fetcher's back-pressure: per partition, so a full one never stops the others)."""
        while self.inflight >= limit:
            if self._room is None:
                self._room = asyncio.Event()
            await self._room.wait()

    async def idle(self) -> None:
        """Wait until no dispatched message of this cursor is in a worker or its queue."""
        if self.inflight == 0:
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        await self._idle.wait()

    def rewind(self) -> None:
        """Restart fetching at the committed offset: unfinished messages are redelivered."""
        self.position = self.committed
        self.forget()


class Topic:
    """A named set of partitions; keys pick a partition, keyless messages rotate."""

    __slots__ = ("_rotation", "name", "partitions")

    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.partitions = [Partition(name, i) for i in range(partitions)]
        self._rotation = itertools.cycle(self.partitions)

    def partition_for(self, key: bytes | None) -> Partition:
        """The partition of ``key`` (always the same one); the next in turn when keyless."""
        if key is None:
            return next(self._rotation)
        # crc32, not hash(): the member's worker choice uses hash(), and the two must not be
        # correlated or a member would leave most of its workers idle.
        return self.partitions[zlib.crc32(key) % len(self.partitions)]
