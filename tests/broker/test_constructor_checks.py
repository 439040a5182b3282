"""Every broker refuses a bad number at construction, naming the argument: ``NaN`` (which
slips through ``value <= 0``), infinities, negatives and non-numbers, for every numeric
argument of its constructor (found by introspection, so a new argument is covered too)."""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest

from framework.broker.memory import MemoryBroker
from framework.transport.kafka import KafkaBroker
from framework.transport.mqtt import MqttBroker
from framework.transport.nats import NatsBroker
from framework.transport.rabbitmq import RabbitBroker
from framework.transport.redis import RedisBroker

BROKERS: list[tuple[type[Any], tuple[str, ...]]] = [
    (KafkaBroker, ("127.0.0.1:9092",)),
    # Never connected: any well-formed URL will do.
    (RabbitBroker, ("amqp://guest:guest@broker.invalid/",)),
    (NatsBroker, ("nats://broker.invalid:4000",)),
    (RedisBroker, ("redis://broker.invalid/0",)),
    (MqttBroker, ("mqtt://broker.invalid",)),
    (MemoryBroker, ()),
]
#: Arguments for which -1 is a documented sentinel ("no limit").
MINUS_ONE_ALLOWED = {("NatsBroker", "delay_max_pending")}


def _numeric_arguments() -> list[tuple[type[Any], tuple[str, ...], str, Any]]:
    cases = []
    for cls, args in BROKERS:
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            default = parameter.default
            if isinstance(default, bool) or not isinstance(default, int | float):
                continue
            for bad in (math.nan, math.inf, -math.inf, -1.0, "1"):
                if bad == -1.0 and (cls.__name__, name) in MINUS_ONE_ALLOWED:
                    continue
                cases.append((cls, args, name, bad))
    return cases


CASES = _numeric_arguments()


def test_the_introspection_finds_the_arguments() -> None:
    names = {(cls.__name__, name) for cls, _, name, _ in CASES}
    for expected in [("RabbitBroker", "publish_timeout"), ("NatsBroker", "ack_wait"),
                     ("MqttBroker", "keepalive"), ("MemoryBroker", "partitions")]:  # fmt: skip
        assert expected in names


@pytest.mark.parametrize(
    ("cls", "args", "name", "bad"),
    CASES,
    ids=[f"{cls.__name__}-{name}-{bad!r}" for cls, _, name, bad in CASES],
)
def test_a_bad_number_is_refused_naming_the_argument(
    cls: type[Any], args: tuple[str, ...], name: str, bad: Any
) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        cls(*args, **{name: bad})
    assert name in str(caught.value)
