"""The Server contract every transport implements (two methods, like go-kratos).

Two optional protocols refine the stop: :class:`ReadinessAware` (readiness goes off before
anything stops) and :class:`IntakeAware` (the App can stop every server's intake at once, then
drain them one by one). A server without them still works: ``stop`` does both steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["HealthReporting", "IntakeAware", "ReadinessAware", "Server"]


@runtime_checkable
class Server(Protocol):
    """A pluggable server owned by :class:`framework.App`.

    ``start`` returns once the server is really ready (socket bound, consumer subscribed).
    ``stop`` stops intake, drains in-flight work within ``timeout`` seconds, acks/commits what
    finished, then releases its resources. ``stop`` must be safe to call on a server whose
    ``start`` failed or never ran.
    """

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...

    @property
    def endpoint(self) -> str:
        """URL of the server (``http://127.0.0.1:8000``); port 0 is resolved after start."""
        ...


@runtime_checkable
class IntakeAware(Protocol):
    """Optional: a server that can refuse new work before it drains.

    When the App stops, it first calls ``stop_intake()`` on every server at once, then
    ``stop(timeout)`` on each in reverse start order. So no server takes new work while
    another one drains (a broker subscriber does not take a message while HTTP finishes its
    requests).

    ``stop_intake`` returns as soon as new work is refused: listeners closed, new calls or
    connections refused, consumers paused or cancelled. It must not wait for work in flight
    (``stop`` does), must be idempotent, and must be safe on a server whose ``start`` failed or
    never ran. ``stop`` must work whether or not ``stop_intake`` was called first.
    """

    async def stop_intake(self) -> None: ...


@runtime_checkable
class ReadinessAware(Protocol):
    """Optional: a server that reports readiness (HTTP ``/readyz``, gRPC health).

    The App calls ``set_serving(True)`` once every server started and ``set_serving(False)``
    when it begins to stop, before any server stops.
    """

    def set_serving(self, serving: bool) -> None: ...


@runtime_checkable
class HealthReporting(Protocol):
    """Optional: a server whose health can fail after it started (e.g. a broker subscriber
    that cannot re-subscribe). The App keeps readiness off while ``health_problem`` is set.
    """

    @property
    def health_problem(self) -> str | None:
        """What is wrong, ``None`` when healthy."""
        ...

    def watch_health(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change of :attr:`health_problem`."""
        ...
