"""Every Kafka broker a test or benchmark builds passes Tansu's fast-join settings.

The real-cluster defaults (a 45 s session) make each group join on Tansu take ~23 s: one
forgotten ``KafkaBroker(bootstrap)`` in a test would add that to CI at every join. This guard
reads the sources (no broker needed) and names the calls that forgot.
"""

from __future__ import annotations

import ast
from pathlib import Path

from framework.transport.kafka import KafkaOptions
from framework.transport.kafka.tansu import FAST_JOIN, TansuProcess

ROOT = Path(__file__).resolve().parents[2]
# Where brokers on Tansu are built: the tests and the benchmarks.
SCANNED = ("tests", "bench")
# What carries the fast-join settings into a call or an options mapping.
FAST_JOIN_NAMES = {"FAST_JOIN", "client_options"}


def _carries_fast_join(keywords: list[ast.keyword]) -> bool:
    for keyword in keywords:
        if keyword.arg == "session_timeout_ms":
            return True
        if keyword.arg is None:  # **something
            names = {n.id for n in ast.walk(keyword.value) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(keyword.value) if isinstance(n, ast.Attribute)}
            if names & FAST_JOIN_NAMES:
                return True
    return False


def _forgotten(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name == "KafkaBroker" and not _carries_fast_join(node.keywords):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_every_kafka_broker_in_tests_and_benchmarks_joins_fast() -> None:
    files = [p for folder in SCANNED for p in (ROOT / folder).rglob("*.py")]
    assert files
    forgotten = [where for path in files for where in _forgotten(path)]
    assert not forgotten, (
        "KafkaBroker(...) without **FAST_JOIN (framework.transport.kafka.tansu): each group "
        f"join on Tansu then takes ~23 s. At: {', '.join(forgotten)}"
    )


def test_the_guard_catches_a_forgotten_call(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "KafkaBroker(bootstrap)\n"
        "KafkaBroker(bootstrap, **FAST_JOIN)\n"
        "KafkaBroker(**tansu.client_options)\n"
        "KafkaBroker(bootstrap, session_timeout_ms=2000)\n",
        encoding="utf-8",
    )
    assert _forgotten(sample, tmp_path) == ["sample.py:1"]


def test_fast_join_is_fast_and_the_defaults_are_a_real_clusters() -> None:
    defaults = KafkaOptions()
    assert (defaults.session_timeout_ms, defaults.heartbeat_interval_ms) == (45_000, 3_000)
    fast = KafkaOptions(**FAST_JOIN)
    assert fast.session_timeout_ms <= 2_000 < defaults.session_timeout_ms
    assert TansuProcess(port=1).client_options == {"bootstrap_servers": "127.0.0.1:1", **FAST_JOIN}
