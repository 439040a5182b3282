"""The README's broker x promise table is generated from the promise list and the broker
suites in this folder, so it always says what the suites run. After adding a broker module
here or changing a declaration, rewrite it with::

    PYKRATOS_UPDATE_README=1 python -m pytest tests/conformance/test_readme_table.py
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from framework.testing.conformance import PROMISES, BrokerConformance, promise_table

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "README.md"
START = "<!-- broker-conformance:start -->\n"
END = "<!-- broker-conformance:end -->"
# The framework's own brokers first, in the order they came; any other one after, by name.
ORDER = ("memory", "kafka", "rabbitmq", "nats", "redis", "mqtt")


def broker_suites() -> list[type[BrokerConformance]]:
    """The BrokerConformance subclass of every ``test_*.py`` module in this folder."""
    suites: list[type[BrokerConformance]] = []
    for path in sorted(HERE.glob("test_*.py")):
        if path.stem == Path(__file__).stem:
            continue
        module = importlib.import_module(f"tests.conformance.{path.stem}")
        found = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, BrokerConformance)
            and value is not BrokerConformance
            and value.__module__ == module.__name__
        ]
        assert len(found) == 1, f"{path.name}: one BrokerConformance subclass, got {found}"
        suites.extend(found)

    def rank(suite: type[BrokerConformance]) -> tuple[int, str]:
        name = suite.broker_name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)

    return sorted(suites, key=rank)


def test_every_broker_suite_has_a_distinct_name() -> None:
    names = [suite.broker_name for suite in broker_suites()]
    assert all(names), f"a suite without broker_name: {names}"
    assert len(names) == len(set(names)), names
    assert {"memory", "kafka", "rabbitmq"} <= set(names)


def test_table_has_a_row_per_promise_and_a_reason_per_exception() -> None:
    suites = broker_suites()
    table = promise_table(suites)
    for promise in PROMISES:
        assert f"| {promise.title} (`{promise.id}`) |" in table
    for suite in suites:
        for reason in (*suite.expected_failures.values(), *suite.not_applicable.values()):
            assert reason in table


def test_readme_table_matches_the_suites() -> None:
    text = README.read_text(encoding="utf-8")
    head, start, rest = text.partition(START)
    block, end, tail = rest.partition(END)
    assert start and end, f"README.md lost its {START.strip()} / {END} markers"
    expected = "\n" + promise_table(broker_suites()) + "\n"
    if os.environ.get("PYKRATOS_UPDATE_README") == "1":
        README.write_text(head + start + expected + end + tail, encoding="utf-8")
        return
    assert block == expected, (
        "README.md's broker conformance table is out of date; rerun with "
        "PYKRATOS_UPDATE_README=1, or put this between the markers:\n" + expected
    )


def test_a_declaration_naming_no_promise_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown promises"):

        class Typo(BrokerConformance):  # pragma: no cover - refused at definition
            expected_failures: ClassVar[Mapping[str, str]] = {"dealy": "typo of delay"}

    with pytest.raises(TypeError, match="both expected to fail and n/a"):

        class Both(BrokerConformance):  # pragma: no cover - refused at definition
            expected_failures: ClassVar[Mapping[str, str]] = {"delay": "a"}
            not_applicable: ClassVar[Mapping[str, str]] = {"delay": "b"}


def test_table_marks_each_exception_with_its_numbered_reason() -> None:
    class Column:
        broker_name = "fake"
        expected_failures: ClassVar[Mapping[str, str]] = {"large_body": "frames are 64 KiB"}
        not_applicable: ClassVar[Mapping[str, str]] = {"reconnect": "in-process"}

    table = promise_table([Column()])
    assert "| a 1 MB body (`large_body`) | expected failure [1] |" in table
    assert "| a consumer reconnects after the server drops it (`reconnect`) | n/a [2] |" in table
    assert "1. `fake`, a 1 MB body: frames are 64 KiB" in table
    assert "| broadcast (`broadcast`) | pass |" in table


def test_table_marks_an_emulated_promise_with_its_note() -> None:
    class Column:
        broker_name = "fake"
        expected_failures: ClassVar[Mapping[str, str]] = {}
        not_applicable: ClassVar[Mapping[str, str]] = {}
        emulated: ClassVar[Mapping[str, str]] = {"tags": "filtered by the processor"}

    table = promise_table([Column()])
    assert "| tag filtering (`tags`) | emulated [1] |" in table
    assert "1. `fake`, tag filtering: filtered by the processor" in table

    with pytest.raises(TypeError, match="emulated, yet failing or n/a"):

        class Both(BrokerConformance):  # pragma: no cover - refused at definition
            emulated: ClassVar[Mapping[str, str]] = {"tags": "a"}
            not_applicable: ClassVar[Mapping[str, str]] = {"tags": "b"}
