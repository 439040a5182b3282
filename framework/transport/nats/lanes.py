"""Ordered work lanes of a NATS subscription: ``spec.concurrency`` workers, one per lane.

A received message goes to the lane of its key (a stable CRC-32 of the ordering key, so the
mapping is the same in every process); keyless messages go round-robin. Each lane handles
its messages strictly one after the other, so messages with the same key never overtake
each other while different keys run concurrently: the memory and RabbitMQ brokers keep
order the same way. A batch subscriber's lane hands lists of up to ``max_size`` messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from framework.broker.message import Message
from framework.broker.policy import BatchPolicy
from framework.broker.workers import WorkerChooser, fill_batch, stop_workers

__all__ = ["Lanes"]

log = logging.getLogger("pykratos.nats")


class Lanes:
    """``count`` worker tasks; ``handle(messages)`` runs for each message (or batch).

    Args:
        count: number of lanes (the subscriber's concurrency).
        handle: settles a list of messages: one message, or one batch.
        batch: the subscriber's batch policy, ``None`` for a per-message handler.
        name: prefix of the worker task names.
    """

    def __init__(
        self,
        count: int,
        handle: Callable[[list[Message]], Awaitable[None]],
        batch: BatchPolicy | None,
        name: str,
    ) -> None:
        self._handle = handle
        self._batch = batch
        self._inboxes: list[asyncio.Queue[Message | None]] = [asyncio.Queue() for _ in range(count)]
        work = self._work if batch is None else self._work_batches
        self._tasks = [
            asyncio.create_task(work(inbox), name=f"{name}[{n}]")
            for n, inbox in enumerate(self._inboxes)
        ]
        self._choose = WorkerChooser()

    def put(self, message: Message) -> None:
        """Queue ``message`` on its lane."""
        inboxes = self._inboxes
        inboxes[self._choose(message.key, len(inboxes))].put_nowait(message)

    def take_queued(self) -> list[Message]:
        """Remove and return every message not started yet (for a stop)."""
        taken: list[Message] = []
        for inbox in self._inboxes:
            while not inbox.empty():
                item = inbox.get_nowait()
                if item is not None:
                    taken.append(item)
        return taken

    async def close(self, timeout: float) -> int:
        """Let each lane finish its current message, then end; cancel lanes still busy after
        ``timeout`` seconds. Returns how many lanes were cancelled."""
        return await stop_workers(self._tasks, self._inboxes, timeout)

    async def _work(self, inbox: asyncio.Queue[Message | None]) -> None:
        handle = self._handle
        while True:
            message = await inbox.get()
            if message is None:
                return
            try:
                await handle([message])
            except Exception:  # a settling bug must not kill the lane
                log.exception("settling a message failed")

    async def _work_batches(self, inbox: asyncio.Queue[Message | None]) -> None:
        policy = self._batch
        assert policy is not None
        while True:
            first = await inbox.get()
            if first is None:
                return
            batch = [first]
            closing = await fill_batch(inbox, batch, policy.max_size, policy.max_wait)
            try:
                await self._handle(batch)
            except Exception:
                log.exception("settling a batch failed")
            if closing:
                return
