"""Clients that find services through the registry and run client middleware.

- :func:`grpc_channel` / :class:`GrpcClientChannel`: a stub-compatible gRPC channel;
- :func:`http_client` / :class:`DiscoveryTransport`: an httpx client;
- balancers :class:`P2C` (default), :class:`WeightedRoundRobin`, :class:`Random`;
  filters :func:`~framework.client.filters.version`, :func:`~framework.client.filters.metadata`;
- client middleware (the same :data:`~framework.middleware.Middleware` type as servers):
  :func:`~framework.metadata.client_metadata`, :func:`deadline`, :func:`retry`,
  :func:`circuit_breaker`; :func:`default_client_middlewares` chains them in Kratos' order.

Imports are lazy so the HTTP client does not need grpc, nor the gRPC one httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from framework.client.balancer import P2C, Balancer, Random, WeightedRoundRobin
from framework.client.breaker import CIRCUITBREAKER, SreBreaker, circuit_breaker
from framework.client.context import ClientCall, client_context
from framework.client.deadline import deadline
from framework.client.filters import Filter
from framework.client.node import Node
from framework.client.resolver import NO_AVAILABLE_NODE, Resolver
from framework.client.retry import RetryBudget, retry
from framework.client.target import Target, parse_target
from framework.middleware.core import Middleware

if TYPE_CHECKING:
    from framework.client.grpc import GrpcClientChannel, grpc_channel
    from framework.client.http import DiscoveryTransport, http_client

__all__ = [
    "CIRCUITBREAKER",
    "NO_AVAILABLE_NODE",
    "P2C",
    "Balancer",
    "ClientCall",
    "DiscoveryTransport",
    "Filter",
    "GrpcClientChannel",
    "Node",
    "Random",
    "Resolver",
    "RetryBudget",
    "SreBreaker",
    "Target",
    "WeightedRoundRobin",
    "circuit_breaker",
    "client_context",
    "deadline",
    "default_client_middlewares",
    "grpc_channel",
    "http_client",
    "parse_target",
    "retry",
]

_LAZY = {
    "GrpcClientChannel": "framework.client.grpc",
    "grpc_channel": "framework.client.grpc",
    "DiscoveryTransport": "framework.client.http",
    "http_client": "framework.client.http",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'framework.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def default_client_middlewares(
    timeout: float | None = None, *, attempts: int = 3, budget: RetryBudget | None = None
) -> list[Middleware]:
    """Metadata, deadline, circuit breaker (per operation), retry (idempotent calls).

    The breaker sits outside the retry: one logical call counts once, and a call it rejects
    is not retried.
    """
    from framework.metadata import client_metadata

    return [
        client_metadata(),
        deadline(timeout),
        circuit_breaker(),
        retry(attempts=attempts, budget=budget),
    ]
