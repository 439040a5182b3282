"""Keeping a subscription consuming, and saying so when it cannot.

A consumer can stop without anyone calling ``stop()``: the broker cancels it (its queue was
deleted), its channel is closed by a protocol error, or one of its tasks crashes on a bug.
Each broker detects its own cases, logs them at WARNING and recovers; what they share is here:

* :class:`Health`: whether a subscription consumes as it should. A broker marks it failed
  while a recovery keeps failing and healthy again once it worked;
  :class:`~framework.broker.server.BrokerServer` turns the failures of its subscriptions into
  its own health, which the App folds into readiness (HTTP ``/readyz``, gRPC health).
* :func:`keep_running`: runs a background loop (worker, fetcher, committer) as a task and
  starts it again, after a growing pause, whenever it ends while its owner is not stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["CRASH_LOOP", "Health", "keep_running"]

#: Consecutive short-lived runs after which a restarted task counts as unable to recover.
CRASH_LOOP = 3
# A run that lasted this long (seconds) was not a crash loop: the pause starts over.
_STABLE = 30.0
_FIRST_PAUSE = 0.1
_MAX_PAUSE = 5.0


class Health:
    """Health of one subscription: ``problem`` is ``None`` while it consumes as it should.

    Listeners added with :meth:`watch` are called (synchronously, no arguments) on every
    change, so a server can recompute its own health.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._problems: dict[str, str] = {}  # source -> sentence
        self._listeners: list[Callable[[], None]] = []

    @property
    def problem(self) -> str | None:
        """What is wrong (``"<name>: <sentence>"``), ``None`` when healthy."""
        if not self._problems:
            return None
        return f"{self.name}: " + "; ".join(self._problems.values())

    def watch(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change of :attr:`problem`."""
        self._listeners.append(listener)

    def fail(self, source: str, problem: str) -> None:
        """Record that ``source`` (e.g. ``"consumer"``, ``"worker 0"``) cannot recover now."""
        if self._problems.get(source) != problem:
            self._problems[source] = problem
            self._notify()

    def ok(self, source: str) -> None:
        """``source`` works again (a no-op when it had no problem)."""
        if self._problems.pop(source, None) is not None:
            self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


def keep_running(
    body: Callable[[], Coroutine[Any, Any, None]],
    *,
    what: str,
    stopping: Callable[[], bool],
    logger: logging.Logger,
    health: Health | None = None,
    on_restart: Callable[[], None] | None = None,
) -> asyncio.Task[None]:
    """Run ``body()`` in a task and run it again whenever it ends while not ``stopping()``.

    An end that nobody asked for (an exception, an unexpected return, or a cancellation that
    did not target this task) is logged at WARNING with its cause, ``on_restart`` is called
    (e.g. to hand back the message the crashed loop held), then ``body()`` starts again after
    a pause growing from 0.1 s to 5 s. After :data:`CRASH_LOOP` consecutive runs shorter than
    30 s, ``health`` is marked failed; it is cleared once a run has lasted 30 s. Cancelling the
    returned task stops it for good.
    """
    return asyncio.create_task(
        _supervise(body, what, stopping, logger, health, on_restart), name=what
    )


async def _supervise(
    body: Callable[[], Coroutine[Any, Any, None]],
    what: str,
    stopping: Callable[[], bool],
    logger: logging.Logger,
    health: Health | None,
    on_restart: Callable[[], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    pause = _FIRST_PAUSE
    short_runs = 0
    stable: asyncio.TimerHandle | None = None
    try:
        while True:
            started = loop.time()
            if health is not None and short_runs >= CRASH_LOOP:
                # Healthy again only once this run has lasted: a crash loop must not flap.
                stable = loop.call_later(_STABLE, health.ok, what)
            error: BaseException | None = None
            try:
                await body()
            except asyncio.CancelledError as exc:
                if stopping() or (task is not None and task.cancelling()):
                    raise  # our own stop
                error = exc  # cancelled from inside (e.g. a cancelled future it awaited)
            except Exception as exc:
                error = exc
            if stable is not None:
                stable.cancel()
                stable = None
            if stopping():
                return
            short_runs = short_runs + 1 if loop.time() - started < _STABLE else 1
            if short_runs == 1:
                pause = _FIRST_PAUSE
            logger.warning(
                "%s stopped unexpectedly (%s); restarting it in %.1fs",
                what,
                "returned" if error is None else f"{type(error).__name__}: {error}",
                pause,
                exc_info=error,
            )
            if on_restart is not None:
                on_restart()
            if health is not None and short_runs >= CRASH_LOOP:
                health.fail(what, f"{what} keeps stopping ({short_runs} times in a row)")
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)
    finally:
        if stable is not None:
            stable.cancel()
