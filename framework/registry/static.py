"""A static registry: fixed instance lists, or an in-process registrar/discovery pair.

:class:`StaticDiscovery` answers from a list given up front (``{"orders": [instance, ...]}``)
and also accepts registrations, so an App and its clients in one process (tests, a
single-binary deployment) can use it as both :class:`Registrar` and :class:`Discovery`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from framework.registry.instance import ServiceInstance
from framework.registry.watch import ListWatcher

__all__ = ["StaticDiscovery", "static_instances"]


def static_instances(
    name: str, addresses: Iterable[str], scheme: str = "grpc"
) -> list[ServiceInstance]:
    """Instances for plain ``host:port`` addresses (or full URLs), ids = the addresses."""
    result = []
    for address in addresses:
        url = address if "://" in address else f"{scheme}://{address}"
        result.append(ServiceInstance(id=url, name=name, endpoints=(url,)))
    return result


class StaticDiscovery:
    """Registrar and Discovery over an in-memory map of service name -> instances."""

    def __init__(self, services: Mapping[str, Iterable[ServiceInstance]] | None = None) -> None:
        self._services: dict[str, dict[str, ServiceInstance]] = {
            name: {i.id: i for i in instances} for name, instances in (services or {}).items()
        }
        self._watchers: dict[str, set[ListWatcher]] = {}

    async def register(self, instance: ServiceInstance) -> None:
        """Add (or replace) ``instance`` and notify the watchers of its service."""
        self._services.setdefault(instance.name, {})[instance.id] = instance
        self._notify(instance.name)

    async def deregister(self, instance: ServiceInstance) -> None:
        """Remove ``instance`` if present and notify the watchers."""
        self._services.get(instance.name, {}).pop(instance.id, None)
        self._notify(instance.name)

    async def get_service(self, name: str) -> list[ServiceInstance]:
        """The instances of ``name``."""
        return list(self._services.get(name, {}).values())

    async def watch(self, name: str) -> ListWatcher:
        """A watcher that sees registrations and removals as they happen."""
        watcher = ListWatcher(on_stop=lambda w: self._forget(name, w))
        self._watchers.setdefault(name, set()).add(watcher)
        watcher.update(await self.get_service(name))
        return watcher

    async def _forget(self, name: str, watcher: ListWatcher) -> None:
        self._watchers.get(name, set()).discard(watcher)

    def _notify(self, name: str) -> None:
        instances = list(self._services.get(name, {}).values())
        for watcher in self._watchers.get(name, ()):
            watcher.update(instances)
