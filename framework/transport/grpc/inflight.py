"""The servicer methods running now, whatever their clients already received.

grpc's own ``Server.stop(grace)`` waits for *calls*: a call is over for grpc once its status
was sent. A method that called ``context.abort()`` (or returned a reply) and is still running
its ``finally`` cleanup is invisible to it, and the App would then close the resources that
cleanup uses. The server's method wrapper registers the task running each method here, so
:meth:`GrpcServer.stop` can wait for the methods themselves.
"""

from __future__ import annotations

import asyncio

__all__ = ["InFlight"]


class InFlight:
    """A set of running method tasks with a wait-until-empty."""

    __slots__ = ("_idle", "_tasks")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._tasks)

    def enter(self) -> asyncio.Task[object] | None:
        """Register the current task; pass the result to :meth:`leave` when the method ends."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            self._idle.clear()
        return task

    def leave(self, task: asyncio.Task[object] | None) -> None:
        """Forget ``task`` (what :meth:`enter` returned)."""
        if task is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()

    async def wait(self, timeout: float) -> bool:
        """Wait until no method runs, at most ``timeout`` seconds; True if none runs."""
        if not self._tasks:
            return True
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def cancel(self) -> int:
        """Cancel every running method; return how many there were."""
        tasks = tuple(self._tasks)
        for task in tasks:
            task.cancel()
        return len(tasks)
