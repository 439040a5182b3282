"""Subscriber options -> topology resolution (no broker needed)."""

from __future__ import annotations

import pytest

from framework.broker import SubscriberSpec, UnsupportedOptionError
from framework.transport.rabbitmq import RabbitBroker, TopologyError
from framework.transport.rabbitmq.options import resolve_topology


async def handler(event: dict) -> None:  # type: ignore[type-arg]
    return None


def resolve(**spec_fields: object):  # type: ignore[no-untyped-def]
    spec_fields.setdefault("topic", "orders.created")
    spec_fields.setdefault("handler", handler)
    spec = SubscriberSpec(**spec_fields)  # type: ignore[arg-type]
    return resolve_topology(
        spec,
        default_exchange="pykratos",
        default_exchange_type="topic",
        default_prefetch=256,
        dead_letter_exchange="pykratos.dlx",
        instance_id="inst1",
    )


def test_clustering_queue_is_shared_and_named_from_group_and_topic() -> None:
    topology = resolve(group="billing")
    assert topology.queue == "billing.orders.created"
    assert not topology.broadcast
    assert topology.exchange == "pykratos" and topology.exchange_type == "topic"
    assert topology.binding_keys == ("orders.created",)
    assert topology.dlq == "orders.created.dlq"
    assert topology.retry_queue(100) == "billing.orders.created.retry.100ms"


def test_no_group_means_a_queue_private_to_the_handler() -> None:
    assert resolve().queue == f"{__name__}.handler.orders.created"


def test_queue_names_are_made_valid_for_amqp() -> None:
    async def local(event: dict) -> None:  # type: ignore[type-arg]
        return None

    topology = resolve(topic="orders.*", handler=local)
    assert topology.queue == (
        f"{__name__}.test_queue_names_are_made_valid_for_amqp.locals.local.orders.star"
    )
    assert topology.dlq == "orders.star.dlq" and topology.dlq_routing_key == "orders.*.dlq"
    odd = resolve(group="a|b").queue
    assert odd.startswith("a_b.orders.created.") and odd != resolve(group="a?b").queue


def test_broadcast_queue_is_per_instance() -> None:
    topology = resolve(broadcast=True)
    assert topology.queue.startswith("broadcast.orders.created.")
    assert topology.queue.endswith(".inst1")
    assert topology.broadcast


def test_explicit_queue_routing_keys_and_exchange() -> None:
    topology = resolve(
        options={
            "exchange": "events",
            "exchange_type": "direct",
            "routing_key": ["a", "b"],
            "queue": "my-q",
            "prefetch": 10,
            "queue_arguments": {"x-queue-type": "quorum"},
        },
        dlq="",
    )
    assert (topology.exchange, topology.exchange_type) == ("events", "direct")
    assert topology.binding_keys == ("a", "b")
    assert topology.queue == "my-q"
    assert topology.prefetch == 10
    assert topology.queue_arguments == {"x-queue-type": "quorum"}
    assert topology.dlq is None


def test_another_exchange_defaults_to_topic_and_fanout_binds_once() -> None:
    assert resolve(options={"exchange": "other"}).exchange_type == "topic"
    fanout = resolve(options={"exchange": "fan", "exchange_type": "fanout", "routing_key": "x"})
    assert fanout.binding_keys == ("",)


def test_unknown_option_is_refused_with_the_supported_list() -> None:
    with pytest.raises(UnsupportedOptionError, match=r"auto_offset_reset.*exchange_type"):
        resolve(options={"auto_offset_reset": "earliest"})


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"exchange_type": "headers"}, "exchange_type must be one of"),
        ({"exchange": ""}, "default exchange"),
        ({"prefetch": 0}, "prefetch must be an int"),
        ({"prefetch": 65_536}, "prefetch must be an int between 1 and 65535"),  # AMQP short
        ({"routing_key": []}, "routing_key must be"),
        ({"queue": ""}, "queue must be a non-empty string"),
        ({"queue_arguments": ["x"]}, "queue_arguments must be a mapping"),
    ],
)
def test_bad_option_values_are_explained(options: dict[str, object], match: str) -> None:
    with pytest.raises(TopologyError, match=match):
        resolve(options=options)


def test_concurrency_above_prefetch_is_refused() -> None:
    with pytest.raises(TopologyError, match="concurrency 20"):
        resolve(concurrency=20, options={"prefetch": 8})


def test_long_names_are_shortened_distinctly() -> None:
    one = resolve(group="g" * 300).queue
    two = resolve(group="g" * 299 + "h").queue
    assert len(one.encode()) <= 231 and len(two.encode()) <= 231
    assert one != two


def test_broker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="exchange_type"):
        RabbitBroker(exchange_type="headers")
    with pytest.raises(ValueError, match="default exchange"):
        RabbitBroker(exchange="")
    assert RabbitBroker.supported_options >= {"exchange", "exchange_type", "routing_key"}
