"""The README's acknowledgement-level table (native / emulated / refused per broker) is
generated from each broker class's ``acks_levels``; rewrite it with::

    PYKRATOS_UPDATE_README=1 python -m pytest tests/broker/test_acks_table.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from framework.broker import MemoryBroker
from framework.broker.acks import ACKS_LEVELS, acks_table, check_acks
from framework.broker.factory import BROKER_KINDS, broker_class

README = Path(__file__).resolve().parents[2] / "README.md"
START = "<!-- acks-levels:start -->\n"
END = "<!-- acks-levels:end -->"


def columns() -> list[tuple[str, dict[str, str]]]:
    return [(kind, dict(broker_class(kind).acks_levels)) for kind in BROKER_KINDS]


def test_every_broker_lists_its_levels_and_its_default_is_one_of_them() -> None:
    for kind, levels in columns():
        assert levels and set(levels) <= set(ACKS_LEVELS), kind
        for how in levels.values():
            assert how.startswith(("native", "emulated: ")), f"{kind}: {how!r}"
    assert MemoryBroker().default_acks in MemoryBroker.acks_levels


def test_readme_acks_table_matches_the_brokers() -> None:
    text = README.read_text(encoding="utf-8")
    head, start, rest = text.partition(START)
    block, end, tail = rest.partition(END)
    assert start and end, f"README.md lost its {START.strip()} / {END} markers"
    expected = "\n" + acks_table(columns()) + "\n"  # type: ignore[arg-type]
    if os.environ.get("PYKRATOS_UPDATE_README") == "1":
        README.write_text(head + start + expected + end + tail, encoding="utf-8")
        return
    assert block == expected, (
        "README.md's acknowledgement-level table is out of date; rerun with "
        "PYKRATOS_UPDATE_README=1, or put this between the markers:\n" + expected
    )


def test_table_cells() -> None:
    table = acks_table(
        [("a", {"all": "native", "none": "native: QoS 0"}), ("b", {"all": "emulated: like x"})]
    )
    assert "| `none` | native (QoS 0) | refused |" in table
    assert "| `all` | native | emulated [1] |" in table
    assert "1. `b`, all: like x" in table


async def test_with_acks_refuses_what_a_broker_cannot_and_checks_the_name() -> None:
    broker = MemoryBroker()
    with pytest.raises(ValueError, match="acks must be one of none, leader, all"):
        broker.with_acks("some")  # type: ignore[arg-type]
    assert check_acks("leader") == "leader"
    redis = broker_class("redis")
    with pytest.raises(NotImplementedError, match="cannot publish with acks='none'"):
        redis.with_acks(redis.__new__(redis), "none")
