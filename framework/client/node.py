"""A node: one instance endpoint the client may call, with the statistics balancers read.

The latency and success statistics are exponentially weighted moving averages decaying with
time (tau = 600 ms, like Kratos' ``selector/node/ewma``): a node that was slow a second ago
and is fast now is seen as fast within about a second.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from framework.registry.instance import ServiceInstance

__all__ = ["Node"]

_TAU = 0.6  # seconds; Kratos' ewma tau


class Node:
    """One callable address of one instance.

    Attributes:
        address: ``host:port``.
        instance: the registry entry it comes from.
        weight: from the instance metadata ``weight`` (default 100, Kratos' default).
        lag: EWMA of call latency, seconds (0 until the first call ends).
        success: EWMA of the success rate (1 = every call succeeded).
        inflight: calls in progress.
        picked_at: monotonic time of the last pick.
    """

    __slots__ = (
        "address",
        "calls",
        "channel",
        "idle",
        "inflight",
        "instance",
        "lag",
        "picked_at",
        "stamp",
        "success",
        "weight",
    )

    def __init__(self, address: str, instance: ServiceInstance) -> None:
        self.address = address
        self.instance = instance
        try:
            self.weight = max(float(instance.metadata.get("weight", 100)), 0.0)
        except ValueError:
            self.weight = 100.0
        self.lag = 0.0
        self.success = 1.0
        self.inflight = 0
        self.picked_at = 0.0
        self.stamp = 0.0
        self.channel: Any = None  # the transport's connection to this node (gRPC channel)
        self.calls: dict[str, Any] = {}  # method -> the channel's multicallable
        self.idle: asyncio.Event | None = None  # set by end() at 0 in flight, once asked for

    def begin(self) -> float:
        """Count a call starting now; returns its start time for :meth:`end`."""
        self.inflight += 1
        return time.monotonic()

    def end(self, started: float, failed: bool) -> None:
        """Count a call that started at ``started``; ``failed`` for a server-side failure."""
        now = time.monotonic()
        self.inflight -= 1
        if self.inflight == 0 and self.idle is not None:
            self.idle.set()
        elapsed = now - self.stamp
        self.stamp = now
        weight = math.exp(-elapsed / _TAU) if elapsed > 0 else 1.0
        latency = now - started
        self.lag = latency if self.lag == 0 else self.lag * weight + latency * (1 - weight)
        self.success = self.success * weight + (0.0 if failed else 1.0) * (1 - weight)

    def load(self) -> float:
        """Kratos' p2c load: latency x (in-flight + 1), divided by the success rate and the
        weight. A node never measured counts as idle (load 0), so a new node gets probed."""
        return self.lag * (self.inflight + 1) / (max(self.success, 0.01) * (self.weight or 1))

    def __repr__(self) -> str:
        return f"Node({self.address}, lag={self.lag * 1000:.1f}ms, inflight={self.inflight})"
