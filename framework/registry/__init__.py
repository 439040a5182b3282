"""Service registry and discovery (Kratos' ``registry``): the contract and its implementations.

- :class:`Registrar` / :class:`Discovery` / :class:`Watcher`: the contract.
- :class:`StaticDiscovery`: fixed lists, or an in-process registry.
- :class:`DnsDiscovery`: A/AAAA records (a Kubernetes headless service).
- ``framework.registry.etcd.EtcdRegistry``: etcd with leases (``etcd`` extra; imported from
  its module so the core needs no etcd client).

An :class:`~framework.App` given ``registrar=`` registers itself once every server is ready
and deregisters first when it stops.
"""

from framework.registry.contract import Discovery, Registrar, Watcher
from framework.registry.dns import DnsDiscovery
from framework.registry.instance import (
    ServiceInstance,
    advertised_endpoints,
    default_advertise_host,
)
from framework.registry.static import StaticDiscovery, static_instances
from framework.registry.watch import ListWatcher

__all__ = [
    "Discovery",
    "DnsDiscovery",
    "ListWatcher",
    "Registrar",
    "ServiceInstance",
    "StaticDiscovery",
    "Watcher",
    "advertised_endpoints",
    "default_advertise_host",
    "static_instances",
]
