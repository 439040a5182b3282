"""The live node list of a client: fed by a registry watcher (or fixed), filtered, picked.

Like Kratos' resolver, an update with **no** instances is ignored (and logged): a registry
that restarts empty, or a watch that resyncs during an outage, must not leave every client
with nothing to call while the instances still serve. Instances that really leave are removed
by the next non-empty update, and calls to a dead address fail over through retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from framework.client.balancer import P2C, Balancer
from framework.client.filters import Filter
from framework.client.node import Node
from framework.client.target import Target
from framework.errors import ServiceUnavailable
from framework.registry.contract import Discovery, Watcher
from framework.registry.instance import ServiceInstance

__all__ = ["NO_AVAILABLE_NODE", "Resolver"]

#: Reason of the 503 raised when no instance can be picked (Kratos' ``no_available_node``).
NO_AVAILABLE_NODE = "NO_AVAILABLE_NODE"
_log = logging.getLogger("pykratos.client")


class Resolver:
    """Keeps the nodes of one target for one scheme (``grpc``/``http``) and picks among them.

    Args:
        target: what to resolve.
        scheme: which endpoint of each instance to use.
        discovery: required for a ``discovery:///`` target.
        balancer: the picker (:class:`~framework.client.balancer.P2C` by default).
        filters: applied in order to every instance list.
        on_removed: called with each node that left (to close its connection once idle).
    """

    def __init__(
        self,
        target: Target,
        scheme: str,
        *,
        discovery: Discovery | None = None,
        balancer: Balancer | None = None,
        filters: Sequence[Filter] = (),
        on_removed: Callable[[Node], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        if target.discovered and discovery is None:
            raise ValueError(f"discovery:///{target.service} needs a discovery (registry)")
        self.target = target
        self.scheme = scheme
        self.discovery = discovery
        self.balancer = balancer or P2C()
        self.filters = list(filters)
        self.nodes: list[Node] = []
        self._on_removed = on_removed
        self._ready = asyncio.Event()
        self._watcher: Watcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self, timeout: float = 10.0) -> None:
        """Resolve once; for a discovered target, keep watching. Waits up to ``timeout`` s for
        a first non-empty list, then returns anyway (calls then fail with 503
        ``NO_AVAILABLE_NODE`` until instances appear)."""
        if not self.target.discovered:
            self.update(
                [
                    ServiceInstance(a, self.target.service, endpoints=(f"{self.scheme}://{a}",))
                    for a in self.target.addresses
                ]
            )
            return
        assert self.discovery is not None
        self._watcher = await self.discovery.watch(self.target.service)
        self._task = asyncio.create_task(self._follow(self._watcher))
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            _log.warning("no instance of %s found within %.1fs", self.target.service, timeout)

    async def close(self) -> None:
        """Stop watching; removed-node cleanups are awaited."""
        if self._watcher is not None:
            await self._watcher.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def pick(self, avoid: set[str] | None = None) -> Node:
        """A node for one call, not one of the ``avoid`` addresses unless they are all that is
        left. Raises ``Error(503, NO_AVAILABLE_NODE)`` when there is none."""
        nodes = self.nodes
        if avoid:
            nodes = [n for n in nodes if n.address not in avoid] or nodes
        if not nodes:
            raise ServiceUnavailable(
                NO_AVAILABLE_NODE, f"no available instance of {self.target.service}"
            )
        return self.balancer.pick(nodes)

    def update(self, instances: Sequence[ServiceInstance]) -> None:
        """Replace the node list, keeping the statistics of nodes that stay."""
        kept = list(instances)
        for keep in self.filters:
            kept = keep(kept)
        if not kept:
            _log.warning(
                "%s: an update with no %s instance%s was ignored; keeping %d node(s)",
                self.target.service,
                self.scheme,
                " (after filters)" if instances else "",
                len(self.nodes),
            )
            return
        current = {node.address: node for node in self.nodes}
        nodes: list[Node] = []
        for instance in kept:
            address = instance.endpoint(self.scheme)
            if address is None:
                continue
            node = current.pop(address, None)
            if node is None or node.instance.id != instance.id:
                if node is not None:  # same address, new instance (a restart): fresh stats
                    current[address] = node
                node = Node(address, instance)
            nodes.append(node)
        if not nodes:
            _log.warning("%s: no instance has a %s endpoint", self.target.service, self.scheme)
            return
        self.nodes = nodes
        self._ready.set()
        for node in current.values():
            if self._on_removed is not None:
                task = asyncio.create_task(self._on_removed(node))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _follow(self, watcher: Watcher) -> None:
        while True:
            self.update(await watcher.next())
