"""``create_broker(kind, **options)``: pick a broker by name, as configuration says.

Transport brokers are imported lazily so the core never needs their client libraries; a
missing one produces an error that says which extra to install. :func:`broker_class` and
:func:`options_target` expose what a kind is made of, for the options schema of
:mod:`framework.broker.options_schema`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from framework.broker.broker import Broker

__all__ = ["BROKER_KINDS", "broker_class", "create_broker", "normalize_kind", "options_target"]

#: kind -> (module, class, extra, top-level packages of that extra)
_REGISTRY: dict[str, tuple[str, str, str | None, tuple[str, ...]]] = {
    "memory": ("framework.broker.memory", "MemoryBroker", None, ()),
    "kafka": ("framework.transport.kafka", "KafkaBroker", "kafka", ("aiokafka", "kafka")),
    "rabbitmq": (
        "framework.transport.rabbitmq",
        "RabbitBroker",
        "rabbitmq",
        ("aio_pika", "aiormq", "pamqp"),
    ),
    "nats": ("framework.transport.nats", "NatsBroker", "nats", ("nats",)),
    "mqtt": ("framework.transport.mqtt", "MqttBroker", "mqtt", ("aiomqtt", "paho")),
    "redis": ("framework.transport.redis", "RedisBroker", "redis", ("redis",)),
}

#: kind -> (module, name) of the class whose constructor keywords are the broker's options,
#: for a broker whose own constructor forwards ``**options`` to it. Kinds not listed here
#: take their options from the broker constructor's keyword parameters.
_OPTIONS_TYPES: dict[str, tuple[str, str]] = {
    "kafka": ("framework.transport.kafka.options", "KafkaOptions"),
    "redis": ("framework.transport.redis.options", "RedisOptions"),
}

#: The broker kinds :func:`create_broker` knows.
BROKER_KINDS: tuple[str, ...] = tuple(_REGISTRY)


def normalize_kind(kind: object) -> str:
    """``" Kafka "`` -> ``"kafka"``; :class:`ValueError` listing the kinds for an unknown one."""
    name = kind.strip().lower() if isinstance(kind, str) else None
    if name is None or name not in _REGISTRY:
        raise ValueError(f"unknown broker kind {kind!r}; valid kinds: {', '.join(_REGISTRY)}")
    return name


def broker_class(kind: str) -> type[Broker]:
    """The broker class of ``kind``, imported on first use.

    Raises:
        ValueError: an unknown kind (the message lists the valid ones).
        ImportError: the kind's client library is missing (the message names the extra).
    """
    name = normalize_kind(kind)
    module_name, class_name, extra, packages = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if extra is not None and missing in packages:
            raise ImportError(
                f"the {name} broker needs {missing}, which is not installed: "
                f"pip install pykratos[{extra}]"
            ) from exc
        raise
    cls: type[Broker] = getattr(module, class_name)
    return cls


def options_target(kind: str) -> Callable[..., Any]:
    """What ``kind``'s options are the keyword arguments of: an options dataclass (Kafka's
    ``KafkaOptions``) or the broker class itself. Same errors as :func:`broker_class`."""
    cls = broker_class(kind)
    entry = _OPTIONS_TYPES.get(normalize_kind(kind))
    if entry is None:
        return cls
    target: Callable[..., Any] = getattr(importlib.import_module(entry[0]), entry[1])
    return target


def create_broker(kind: str, **options: Any) -> Broker:
    """Instantiate the broker named ``kind`` (``"memory"``, ``"kafka"``, ``"rabbitmq"``,
    ``"nats"``, ``"redis"``, ``"mqtt"``).

    ``options`` go to its constructor (e.g. ``bootstrap_servers=`` for Kafka, ``url=`` for
    RabbitMQ and MQTT, ``servers=`` for NATS, ``partitions=`` for memory);
    :func:`~framework.broker.options_schema.broker_options` lists them.

    Raises:
        ValueError: an unknown kind, or an option value the broker refuses.
        TypeError: an unknown option (the message lists the valid ones).
        ImportError: the kind's client library is missing (the message names the extra).
    """
    cls = broker_class(kind)
    try:
        return cls(**options)
    except TypeError as exc:
        from framework.broker.options_schema import unknown_options_message

        detail = unknown_options_message(kind, options) or str(exc)
        raise TypeError(f"create_broker({kind!r}): {detail}") from exc
