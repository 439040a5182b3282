"""The README's broker x promise table, generated from :data:`PROMISES` and each broker's
declarations (``expected_failures``, ``not_applicable``). No pytest here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from framework.testing.conformance.promises import PROMISES

__all__ = ["BrokerColumn", "promise_table"]

PASS = "pass"
EXPECTED_FAILURE = "expected failure"
NOT_APPLICABLE = "n/a"
EMULATED = "emulated"


class BrokerColumn(Protocol):
    """What the table reads from a broker's suite class (a ``BrokerConformance`` subclass).

    A column may also have ``emulated`` (promise id -> how the framework makes up for what
    the broker lacks); a column without it emulates nothing.
    """

    broker_name: str
    expected_failures: Mapping[str, str]
    not_applicable: Mapping[str, str]


def promise_table(columns: Sequence[BrokerColumn]) -> str:
    """Markdown: one row per promise, one column per broker; each cell says ``pass``
    (kept by the broker itself), ``emulated [n]`` (kept, by the framework), ``expected
    failure [n]`` or ``n/a [n]``, and note ``n`` below the table gives the reason or the way.
    """
    header = "| promise | " + " | ".join(f"`{c.broker_name}`" for c in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    lines = [header, rule]
    notes: list[str] = []
    for promise in PROMISES:
        cells = []
        for column in columns:
            emulated: Mapping[str, str] = getattr(column, "emulated", {})
            if promise.id in column.expected_failures:
                verdict, reason = EXPECTED_FAILURE, column.expected_failures[promise.id]
            elif promise.id in column.not_applicable:
                verdict, reason = NOT_APPLICABLE, column.not_applicable[promise.id]
            elif promise.id in emulated:
                verdict, reason = EMULATED, emulated[promise.id]
            else:
                cells.append(PASS)
                continue
            notes.append(f"{len(notes) + 1}. `{column.broker_name}`, {promise.title}: {reason}")
            cells.append(f"{verdict} [{len(notes)}]")
        lines.append(f"| {promise.title} (`{promise.id}`) | " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)
