"""Acknowledgement levels of publishing, one vocabulary for every broker.

``publish`` returns once the broker acknowledged the message at the broker's level (its
configuration; ``"all"`` on Kafka unless told otherwise). :meth:`Broker.with_acks
<framework.broker.broker.Broker.with_acks>` (or ``Publisher(broker, acks=...)``) gives a
handle that publishes at another level on the same connection:

========  =======================  ====================  =====================  =========
level     Kafka (Sarama's          RabbitMQ              NATS                   MQTT
          ``RequiredAcks``)
========  =======================  ====================  =====================  =========
none      ``acks=0``               no publisher confirm  core publish           QoS 0
leader    ``acks=1``               publisher confirm     JetStream (PubAck)     QoS 1
all       ``acks=all``             publisher confirm     JetStream (PubAck)     QoS 2
========  =======================  ====================  =====================  =========

Each broker class lists what it supports in ``acks_levels`` (``"native"`` or
``"emulated"``, with the reason); a level it cannot give raises ``NotImplementedError`` in
``with_acks``, never a silent downgrade.

Fire-and-forget (``"none"``) is not fire-and-ignore: a failure the client sees (refused
before sending, a connection lost with the message in its buffer, a background send that
failed) raises from ``publish`` when it is known in time, and otherwise is *reported*:
counted in :attr:`UnconfirmedFailures.count`, logged at ERROR with the running count, and
passed to the handle's ``on_error(topic, error)`` callback. What no level-0 protocol can
tell (a broker that dropped the message after receiving it) stays unknown: that is the
trade the level makes.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "ACKS_LEVELS",
    "Acks",
    "OnPublishError",
    "PublishMode",
    "UnconfirmedFailures",
    "acks_table",
    "check_acks",
    "describe_levels",
    "publish_mode",
    "publishing_at",
]

_log = logging.getLogger("pykratos.broker")

#: An acknowledgement level (see the module docstring).
Acks = Literal["none", "leader", "all"]
ACKS_LEVELS: tuple[Acks, ...] = get_args(Acks)
#: ``on_error(topic, error)``: called for each fire-and-forget publish that failed.
OnPublishError = Callable[[str, BaseException], None]


def check_acks(acks: object) -> Acks:
    """``acks`` as a level; :class:`ValueError` naming the valid ones otherwise."""
    if acks not in ACKS_LEVELS:
        raise ValueError(f"acks must be one of {', '.join(ACKS_LEVELS)}, got {acks!r}")
    level: Acks = acks
    return level


@dataclass(frozen=True, slots=True)
class PublishMode:
    """The level one ``publish`` call runs at, and where its late failures go."""

    acks: Acks
    on_error: OnPublishError | None = None

    @property
    def confirmed(self) -> bool:
        """``False`` for fire-and-forget (``"none"``)."""
        return self.acks != "none"


# Set by AcksView around the one publish call it forwards (the broker reads it at once);
# never left set, so other publishes of the task keep the broker's level.
_MODE: contextvars.ContextVar[PublishMode | None] = contextvars.ContextVar(
    "pykratos_publish_mode", default=None
)


@contextlib.contextmanager
def publishing_at(mode: PublishMode) -> Iterator[None]:
    """Within the block, :func:`publish_mode` answers ``mode`` (what an ``AcksView`` sets
    around the one ``publish`` call it forwards)."""
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def publish_mode(default: Acks) -> PublishMode:
    """For a broker's ``publish``: the level of this call (an :class:`AcksView`'s, else the
    broker's ``default``)."""
    mode = _MODE.get()
    return mode if mode is not None else PublishMode(default)


class UnconfirmedFailures:
    """Failures of a broker's fire-and-forget publishes (see the module docstring).

    Attributes:
        count: failures so far (since the broker was made).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.count = 0

    def report(self, topic: str, error: BaseException, mode: PublishMode | None = None) -> None:
        """Count and log one failure; call ``mode.on_error`` (its own errors are logged)."""
        self.count += 1
        _log.error(
            "%s: fire-and-forget publish to %r failed (%d failure(s) so far): %r",
            self.kind,
            topic,
            self.count,
            error,
            extra={"topic": topic, "failures": self.count},
        )
        if mode is not None and mode.on_error is not None:
            try:
                mode.on_error(topic, error)
            except Exception:
                _log.exception("%s: on_error callback raised", self.kind)


def describe_levels(levels: Mapping[Acks, str]) -> str:
    """``"none (emulated), leader, all"`` for an error message."""
    return ", ".join(
        level if how == "native" else f"{level} ({how})" for level, how in levels.items()
    )


def acks_table(columns: Sequence[tuple[str, Mapping[Acks, str]]]) -> str:
    """Markdown: one row per level, one column per ``(broker name, acks_levels)``; a cell
    says ``native`` (with its detail), ``emulated [n]`` (note ``n`` below says how) or
    ``refused``."""
    lines = [
        "| level | " + " | ".join(f"`{name}`" for name, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    notes: list[str] = []
    for level in ACKS_LEVELS:
        cells = []
        for name, levels in columns:
            how = levels.get(level)
            if how is None:
                cells.append("refused")
            elif how.startswith("emulated"):
                detail = how.partition(":")[2].strip()
                notes.append(f"{len(notes) + 1}. `{name}`, {level}: {detail}")
                cells.append(f"emulated [{len(notes)}]")
            else:
                cells.append(how.replace("native: ", "native (") + (")" if ": " in how else ""))
        lines.append(f"| `{level}` | " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines)
