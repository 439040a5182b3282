"""Balancers, the retry budget and the SRE breaker, on their own."""

from __future__ import annotations

import collections
import time

from framework.client import P2C, RetryBudget, SreBreaker, WeightedRoundRobin
from framework.client.node import Node
from framework.registry import ServiceInstance


def _node(name: str, weight: int = 100) -> Node:
    return Node(f"{name}:1", ServiceInstance(name, "svc", metadata={"weight": str(weight)}))


def test_smooth_weighted_round_robin_spreads_by_weight() -> None:
    nodes = [_node("a", 5), _node("b", 1), _node("c", 1)]
    wrr = WeightedRoundRobin()
    order = [wrr.pick(nodes).instance.id for _ in range(7)]
    assert order == ["a", "a", "b", "a", "c", "a", "a"]
    counts = collections.Counter(wrr.pick(nodes).instance.id for _ in range(700))
    assert counts == {"a": 500, "b": 100, "c": 100}


def test_p2c_prefers_the_fast_node_and_still_probes_the_slow_one() -> None:
    fast, slow = _node("fast"), _node("slow")
    for node, latency in ((fast, 0.001), (slow, 0.010)):
        started = node.begin()
        node.end(started - latency, failed=False)
    p2c = P2C(force_pick=3.0)
    picks = collections.Counter(p2c.pick([fast, slow]).instance.id for _ in range(1000))
    assert picks["slow"] <= 1  # at most the forced first probe
    slow.picked_at = time.monotonic() - 4  # not picked for longer than force_pick
    assert p2c.pick([fast, slow]) is slow


def test_p2c_counts_in_flight_calls() -> None:
    a, b = _node("a"), _node("b")
    for node in (a, b):
        started = node.begin()
        node.end(started - 0.002, failed=False)
    a.picked_at = b.picked_at = time.monotonic()
    for _ in range(3):
        a.begin()  # a is busy
    assert P2C().pick([a, b]) is b


def test_failures_lower_a_nodes_success_rate() -> None:
    node = _node("a")
    for _ in range(20):
        started = node.begin()
        time.sleep(0.01)
        node.end(started, failed=True)
    assert node.success < 0.8


def test_retry_budget_allows_a_ratio_plus_a_floor() -> None:
    budget = RetryBudget(ratio=0.25, min_per_second=0)
    for _ in range(100):
        budget.deposit()
    granted = sum(budget.withdraw() for _ in range(50))
    assert granted == 25
    floor = RetryBudget(ratio=0, min_per_second=5)
    assert sum(floor.withdraw() for _ in range(50)) == 5


def test_sre_breaker_probability_follows_the_formula() -> None:
    breaker = SreBreaker(k=2, min_requests=10, window=60)
    for _ in range(100):
        assert breaker.allow()
        breaker.accepted()
    # All accepted: requests < k * accepts, nothing is rejected.
    assert all(breaker.allow() for _ in range(50))
    for _ in range(50):
        breaker.accepted()
    failing = SreBreaker(k=2, min_requests=10, window=60)
    decisions = [failing.allow() for _ in range(1000)]  # nothing ever accepted
    assert decisions[:10] == [True] * 10
    assert sum(decisions[500:]) < 20


def test_targets() -> None:
    import pytest

    from framework.client import parse_target

    assert parse_target("discovery:///orders").service == "orders"
    assert parse_target("discovery:///orders").discovered
    direct = parse_target("grpc://127.0.0.1:9000,10.0.0.2:9000")
    assert direct.addresses == ("127.0.0.1:9000", "10.0.0.2:9000") and not direct.discovered
    assert parse_target("[::1]:80").addresses == ("[::1]:80",)
    for bad in ("discovery:///", "orders", "host:port"):
        with pytest.raises(ValueError):
            parse_target(bad)
