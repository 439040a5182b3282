"""The registry contract: two small interfaces, like Kratos' ``registry`` package.

A :class:`Registrar` puts this instance in the registry and takes it out; a
:class:`Discovery` lists the instances of a service and watches them change. A
:class:`Watcher`'s first :meth:`~Watcher.next` returns the current list at once, each later
call blocks until the list changed (Kratos' ``Watcher.Next``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from framework.registry.instance import ServiceInstance

__all__ = ["Discovery", "Registrar", "Watcher"]


@runtime_checkable
class Registrar(Protocol):
    """Registers this process' instance; the App calls it after start and first on stop."""

    async def register(self, instance: ServiceInstance) -> None:
        """Make ``instance`` visible to discovery. Raises on failure (the App fails to start)."""
        ...

    async def deregister(self, instance: ServiceInstance) -> None:
        """Remove ``instance``; idempotent."""
        ...


@runtime_checkable
class Watcher(Protocol):
    """A live view of one service's instances."""

    async def next(self) -> list[ServiceInstance]:
        """The full current list: at once on the first call, then when it changes."""
        ...

    async def stop(self) -> None:
        """Stop watching; a pending :meth:`next` raises ``asyncio.CancelledError``."""
        ...


@runtime_checkable
class Discovery(Protocol):
    """Finds the instances of a service by name."""

    async def get_service(self, name: str) -> list[ServiceInstance]:
        """The instances registered under ``name`` right now (maybe empty)."""
        ...

    async def watch(self, name: str) -> Watcher:
        """A :class:`Watcher` on ``name``'s instances."""
        ...
