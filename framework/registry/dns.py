"""DNS discovery: the A/AAAA records of a name, e.g. a Kubernetes headless service.

A headless service (``clusterIP: None``) resolves to one address per ready pod; every address
becomes an instance with the configured ports (``{"grpc": 9000, "http": 8000}``). Resolution
uses the event loop's ``getaddrinfo`` (the system resolver, ``/etc/hosts`` included), polled
every ``interval`` seconds by a watcher: DNS has no push. SRV records are not read (they need
a DNS library); ports come from the configuration instead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from functools import partial

from framework.registry.instance import ServiceInstance
from framework.registry.watch import ListWatcher, watcher_fed_by
from framework.transport.address import host_port

__all__ = ["DnsDiscovery"]

_log = logging.getLogger("pykratos.registry.dns")


class DnsDiscovery:
    """Discovery from DNS A/AAAA records.

    Args:
        hosts: service name -> DNS name (``{"orders": "orders.shop.svc.cluster.local"}``); a
            service missing from it is looked up under its own name.
        ports: scheme -> port of every instance (``{"grpc": 9000}``).
        interval: seconds between lookups of a watched name.
    """

    def __init__(
        self,
        ports: Mapping[str, int],
        *,
        hosts: Mapping[str, str] | None = None,
        interval: float = 5.0,
    ) -> None:
        if not ports:
            raise ValueError("DnsDiscovery needs at least one scheme -> port")
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.ports = dict(ports)
        self.hosts = dict(hosts or {})
        self.interval = interval

    async def get_service(self, name: str) -> list[ServiceInstance]:
        """One instance per distinct address of the name; ``[]`` if it does not resolve."""
        host = self.hosts.get(name, name)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            _log.debug("%s does not resolve: %s", host, exc)
            return []
        addresses = sorted({str(info[4][0]) for info in infos})
        return [
            ServiceInstance(
                id=address,
                name=name,
                endpoints=tuple(
                    f"{scheme}://{host_port(address, port)}" for scheme, port in self.ports.items()
                ),
            )
            for address in addresses
        ]

    async def watch(self, name: str) -> ListWatcher:
        """A watcher that looks the name up every ``interval`` seconds."""
        initial = await self.get_service(name)
        watcher, _ = watcher_fed_by(partial(self._poll, name))
        watcher.update(initial)  # before the task's first step: it sleeps first
        return watcher

    async def _poll(self, name: str, watcher: ListWatcher) -> None:
        while True:
            await asyncio.sleep(self.interval)
            watcher.update(await self.get_service(name))
