"""Balancers: pick one node per call (Kratos' ``selector`` package).

- :class:`P2C` (default): power of two choices over EWMA latency, Kratos' default. Two random
  nodes, the one with the lower :meth:`~framework.client.node.Node.load` wins; a node left
  unpicked for ``force_pick`` seconds is picked once, so a node that was slow gets measured
  again.
- :class:`WeightedRoundRobin`: smooth weighted round robin (nginx's), weights from the
  instance metadata ``weight``.
- :class:`Random`: uniform.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Protocol

from framework.client.node import Node

__all__ = ["P2C", "Balancer", "Random", "WeightedRoundRobin"]


class Balancer(Protocol):
    """Picks a node among ``nodes`` (never empty)."""

    def pick(self, nodes: Sequence[Node]) -> Node: ...


class Random:
    """Uniformly random."""

    def pick(self, nodes: Sequence[Node]) -> Node:
        return nodes[0] if len(nodes) == 1 else random.choice(nodes)


class WeightedRoundRobin:
    """Smooth weighted round robin: with weights 5, 1, 1 the order is a a b a c a a, spread
    out rather than bunched."""

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(self, nodes: Sequence[Node]) -> Node:
        if len(nodes) == 1:
            return nodes[0]
        total = 0.0
        best: Node | None = None
        best_value = 0.0
        current = self._current
        for node in nodes:
            value = current.get(node.address, 0.0) + node.weight
            current[node.address] = value
            total += node.weight
            if best is None or value > best_value:
                best, best_value = node, value
        assert best is not None
        current[best.address] = best_value - total
        if len(current) > 2 * len(nodes):  # forget nodes that left
            live = {n.address for n in nodes}
            self._current = {k: v for k, v in current.items() if k in live}
        return best


class P2C:
    """Power of two choices over EWMA latency (Kratos' ``selector/p2c``).

    Args:
        force_pick: seconds after which a node the comparison keeps losing is picked anyway
            (Kratos: 3 s).
    """

    def __init__(self, force_pick: float = 3.0) -> None:
        self.force_pick = force_pick

    def pick(self, nodes: Sequence[Node]) -> Node:
        count = len(nodes)
        if count == 1:
            chosen = nodes[0]
            chosen.picked_at = time.monotonic()
            return chosen
        if count == 2:
            a, b = nodes[0], nodes[1]
        else:
            i, j = random.sample(range(count), 2)
            a, b = nodes[i], nodes[j]
        if a.load() > b.load():
            a, b = b, a  # a: the less loaded
        now = time.monotonic()
        if now - b.picked_at > self.force_pick and b.inflight == 0:
            a = b  # probe the loser now and then: its figures may be stale
        a.picked_at = now
        return a
