"""Every broker refuses a bad number at construction, naming the argument: ``NaN`` (which
slips through ``value <= 0``), infinities, negatives, ``bool``, non-numbers, a float where an
int is meant and numbers above the argument's bound, for every numeric option of every
broker kind. The options are found as the config sees them (the broker's keyword arguments,
or its options dataclass for Kafka and Redis), so a new option is covered too."""

from __future__ import annotations

import math
import types
from typing import Any, Union, get_args, get_origin

import pytest

from framework.broker.factory import create_broker
from framework.broker.options_schema import BROKER_KINDS, broker_options
from framework.checks import MAX_SECONDS, check_counts, check_seconds
from framework.data.relay import OutboxRelay
from framework.registry.etcd import EtcdRegistry
from framework.transport.mqtt import MqttBroker
from framework.transport.rabbitmq import RabbitBroker

#: Options for which -1 is a documented sentinel ("no limit").
MINUS_ONE_ALLOWED = {("nats", "delay_max_pending")}
#: Counts with no natural upper bound (ours, or an int64 the server takes): a huge one is
#: only a big buffer or batch. Any other count must refuse 10**30.
UNBOUNDED_COUNTS = {
    ("kafka", "max_records"),
    ("kafka", "max_buffered"),
    ("kafka", "commit_every"),
    ("rabbitmq", "ack_batch"),
    ("nats", "prefetch"),
    ("nats", "fetch_batch"),
    ("nats", "max_ack_pending"),
    ("nats", "delay_max_pending"),
    ("redis", "prefetch"),
    ("redis", "ack_batch"),
}


def _number_type(annotation: Any) -> tuple[type, bool] | None:
    """``(int or float, None allowed)`` for a numeric option, else ``None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = set(get_args(annotation))
    else:
        members = {annotation}
    optional = type(None) in members
    members.discard(type(None))
    if members == {int} or members == {float}:
        return members.pop(), optional
    return None


def _numeric_options() -> list[tuple[str, str, type, bool]]:
    found = []
    for kind in BROKER_KINDS:
        for option in broker_options(kind):
            typed = _number_type(option.annotation)
            if typed is not None:
                found.append((kind, option.name, *typed))
    return found


def _cases() -> list[tuple[str, str, Any]]:
    cases = []
    for kind, name, number, optional in _numeric_options():
        bad: list[Any] = [math.nan, math.inf, -math.inf, True, "5"]
        if (kind, name) not in MINUS_ONE_ALLOWED:
            bad.append(-1)
        if not optional:
            bad.append(None)
        if number is float:
            bad.append(1e30)  # finite, and overflows a timedelta or a date
        else:
            bad.append(2.0)  # a float where an int is meant
            if (kind, name) not in UNBOUNDED_COUNTS:
                bad.append(10**30)
        cases.extend((kind, name, value) for value in bad)
    return cases


CASES = _cases()


def test_the_introspection_finds_the_options() -> None:
    names = {(kind, name) for kind, name, _ in CASES}
    for expected in [
        ("rabbitmq", "publish_timeout"),
        ("nats", "ack_wait"),
        ("mqtt", "keepalive"),
        ("memory", "partitions"),
        # options dataclass fields, not constructor arguments
        ("kafka", "linger_ms"),
        ("kafka", "rebalance_drain_timeout"),
        ("kafka", "delay_replication_factor"),
        ("redis", "socket_timeout"),
        ("redis", "minid_age"),
    ]:
        assert expected in names
    # every exemption still names an option
    assert names >= UNBOUNDED_COUNTS | MINUS_ONE_ALLOWED


@pytest.mark.parametrize(
    ("kind", "name", "bad"), CASES, ids=[f"{kind}-{name}-{bad!r}" for kind, name, bad in CASES]
)
def test_a_bad_number_is_refused_naming_the_option(kind: str, name: str, bad: Any) -> None:
    with pytest.raises(ValueError) as caught:
        create_broker(kind, **{name: bad})
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("kafka", {"linger_ms": 0, "fetch_max_wait_ms": 0}),  # 0 is meaningful for both
        ("kafka", {"request_timeout_ms": 2**31 - 1, "delay_replication_factor": 2**15 - 1}),
        ("kafka", {"publish_timeout": MAX_SECONDS, "join_timeout": 1}),  # an int is seconds too
        ("redis", {"minid_age": MAX_SECONDS, "publish_timeout": MAX_SECONDS}),
        ("rabbitmq", {"prefetch": 65_535}),
        ("mqtt", {"qos": 0, "will_qos": 2}),
        ("memory", {"partitions": 65_536}),
    ],
)
def test_the_bounds_themselves_are_accepted(kind: str, options: dict[str, Any]) -> None:
    create_broker(kind, **options)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        # AMQP carries basic.qos prefetch-count as a short: pamqp refused 70000 only at start
        ("rabbitmq", {"prefetch": 70_000}, "prefetch must be an int between 1 and 65535"),
        ("mqtt", {"qos": 0.0}, "qos must be an int between 0 and 2, got 0.0"),
        ("mqtt", {"will_qos": True}, "will_qos must be an int between 0 and 2, got True"),
        ("memory", {"partitions": 65_537}, "partitions must be an int between 1 and 65536"),
        ("kafka", {"acks": True}, "acks must be one of"),  # True == 1 passed as "leader"
        # NaN slipped past the block_ms < socket_timeout rule
        ("redis", {"socket_timeout": math.nan}, "socket_timeout must be a finite number"),
    ],
)
def test_the_reported_cases(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_broker(kind, **options)


def test_seconds_are_bounded_and_the_bound_can_be_tightened() -> None:
    check_seconds("X", a=MAX_SECONDS, b=0.001)
    with pytest.raises(ValueError, match=r"X: a must be .*<= 1000000000, got 1000000001"):
        check_seconds("X", a=MAX_SECONDS + 1)
    with pytest.raises(ValueError, match=r"<= 60, got 61"):
        check_seconds("X", maximum=60, a=61)
    check_seconds("X", allow_zero=True, a=0)
    with pytest.raises(ValueError, match="a must be an int between 0 and 2, got 3"):
        check_counts("X", minimum=0, maximum=2, a=3)


def test_a_huge_registry_ttl_or_relay_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="EtcdRegistry: ttl must be an int between 1 and"):
        EtcdRegistry(ttl=10**30)
    broker = RabbitBroker()
    for name in ("retention", "inbox_retention", "max_backoff"):
        with pytest.raises(ValueError, match=rf"OutboxRelay: {name} must be .*<= 1000000000"):
            OutboxRelay(None, broker, **{name: 1e30})  # type: ignore[arg-type]


def test_the_mqtt_and_rabbit_brokers_keep_their_bounds_direct() -> None:
    # the same checks when code constructs the broker class rather than the factory
    with pytest.raises(ValueError, match="RabbitBroker: prefetch"):
        RabbitBroker(prefetch=65_536)
    with pytest.raises(ValueError, match="MqttBroker: qos"):
        MqttBroker(qos=True)


def test_policies_and_option_choices_refuse_lookalike_numbers() -> None:
    from framework.broker import BatchPolicy, RetryPolicy, SubscriberSpec
    from framework.broker.options import UnsupportedOptionError, option_choice

    for bad in ({"backoff": math.nan}, {"max_backoff": math.inf}, {"multiplier": math.nan},
                {"multiplier": 0.5}, {"max_attempts": 1.5}, {"max_attempts": True}):  # fmt: skip
        [name] = bad
        with pytest.raises(ValueError, match=name):
            RetryPolicy(**bad)
    with pytest.raises(ValueError, match="max_wait"):
        BatchPolicy(max_wait=math.nan)

    async def handle(body: bytes) -> None: ...

    for odd in (True, 1.0):  # equal to 1, but not a QoS level
        spec = SubscriberSpec("t", handle, options={"qos": odd})
        with pytest.raises(UnsupportedOptionError, match="qos must be one of"):
            option_choice(spec, "qos", (0, 1, 2), 1)
    assert option_choice(SubscriberSpec("t", handle, options={"qos": 2}), "qos", (0, 1, 2), 1) == 2
