"""``create_broker(kind, **options)``: pick a broker by name, as configuration says.

Transport brokers are imported lazily so the core never needs their client libraries; a
missing one produces an error that says which extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any

from framework.broker.broker import Broker

__all__ = ["BROKER_KINDS", "create_broker"]

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
}

#: The broker kinds :func:`create_broker` knows.
BROKER_KINDS: tuple[str, ...] = tuple(_REGISTRY)


def create_broker(kind: str, **options: Any) -> Broker:
    """Instantiate the broker named ``kind`` (``"memory"``, ``"kafka"``, ``"rabbitmq"``).

    ``options`` go to its constructor (e.g. ``bootstrap_servers=`` for Kafka, ``url=`` for
    RabbitMQ, ``partitions=`` for memory).
    """
    entry = _REGISTRY.get(kind.strip().lower()) if isinstance(kind, str) else None
    if entry is None:
        raise ValueError(f"unknown broker kind {kind!r}; valid kinds: {', '.join(BROKER_KINDS)}")
    module_name, class_name, extra, packages = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if extra is not None and missing in packages:
            raise ImportError(
                f"the {kind} broker needs {missing}, which is not installed: "
                f"pip install pykratos[{extra}]"
            ) from exc
        raise
    broker_class = getattr(module, class_name)
    try:
        broker: Broker = broker_class(**options)
    except TypeError as exc:
        raise TypeError(f"create_broker({kind!r}): {exc}") from exc
    return broker
