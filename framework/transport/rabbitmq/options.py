"""Subscriber options understood by the RabbitMQ broker and the topology they resolve to.

``@router.subscriber(..., options={...})`` may carry these keys (anything else is an error,
so a typo or a Kafka-only option never passes silently: ``UnsupportedOptionError``):

``exchange``
    Exchange to bind the queue to (default: the broker's ``exchange``). It is declared
    durable with ``exchange_type``; the default exchange ``""`` cannot be bound.
``exchange_type``
    ``"direct"``, ``"topic"`` or ``"fanout"`` (default: the broker's ``exchange_type`` when
    ``exchange`` is the broker's exchange, else ``"topic"``).
``routing_key``
    Binding key, or a list of them (default: the subscriber's topic; unused for fanout).
``queue``
    Explicit queue name. By default a clustering subscriber shares the durable queue
    ``<group>.<topic>`` (without a group, the group is the handler's ``module.qualname``,
    as on the other brokers: a subscription private to that handler), and a broadcast
    subscriber gets an exclusive auto-delete queue ``broadcast.<topic>.<handler>.<instance
    id>`` (``<explicit queue>.<instance id>`` with ``queue``).
    Names longer than AMQP's 255 bytes are shortened with a hash suffix.
``prefetch``
    QoS prefetch count of this subscriber's channel (default: the broker's ``prefetch``).
``queue_arguments``
    Extra ``x-`` arguments for the queue declaration, e.g. ``{"x-queue-type": "quorum"}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from framework.broker.options import check_options
from framework.broker.signature import handler_name
from framework.broker.subscriber import SubscriberSpec
from framework.transport.rabbitmq.errors import TopologyError

__all__ = [
    "EXCHANGE_TYPES",
    "KNOWN_OPTIONS",
    "MAX_PREFETCH",
    "SubscriberTopology",
    "queue_name",
    "resolve_topology",
]

EXCHANGE_TYPES = frozenset({"direct", "topic", "fanout"})
#: The largest prefetch: basic.qos carries prefetch-count as an AMQP short (16 bits).
MAX_PREFETCH = 65_535
_MAX_NAME = 255  # AMQP short string: queue and exchange names
_INVALID = re.compile(r"[^a-zA-Z0-9\-_.:@#,/+ ]")  # what pamqp/AMQP refuse in a queue name
KNOWN_OPTIONS = frozenset(
    {"exchange", "exchange_type", "routing_key", "queue", "prefetch", "queue_arguments"}
)


@dataclass(frozen=True, slots=True)
class SubscriberTopology:
    """Everything a subscription declares, resolved from its spec and the broker defaults."""

    exchange: str
    exchange_type: str
    binding_keys: tuple[str, ...]
    queue: str
    broadcast: bool
    prefetch: int
    dead_letter_exchange: str
    dlq: str | None  # dead-letter queue name; None: dead-lettering disabled
    dlq_routing_key: str | None  # its binding key on the DLX: the spec's dlq topic
    queue_arguments: Mapping[str, Any] = field(default_factory=dict)
    #: the subscriber's tags, sorted; empty: no tag filtering (the queue binds directly).
    tags: tuple[str, ...] = ()

    @property
    def tag_exchange(self) -> str | None:
        """The headers exchange a tagged subscriber's queue binds to, per tag: one per
        (exchange, binding keys), so subscribers binding different keys never share one;
        ``None`` without tags."""
        if not self.tags:
            return None
        return queue_name(f"pykratos.tags.{self.exchange}.{','.join(sorted(self.binding_keys))}")

    def retry_queue(self, delay_ms: int) -> str:
        """Name of the TTL queue that holds this queue's retries for ``delay_ms``."""
        return f"{self.queue}.retry.{delay_ms}ms"


def _binding_keys(spec: SubscriberSpec, exchange_type: str, raw: Any) -> tuple[str, ...]:
    if exchange_type == "fanout":
        return ("",)  # fanout ignores keys; one binding is enough
    if raw is None:
        return (spec.topic,)
    keys = (raw,) if isinstance(raw, str) else tuple(raw) if isinstance(raw, Sequence) else ()
    if not keys or not all(isinstance(k, str) for k in keys):
        raise TopologyError(
            f"subscriber {spec.display_name!r}: routing_key must be a string or a non-empty "
            f"list of strings, got {raw!r}"
        )
    return keys


def _queue_name(spec: SubscriberSpec, explicit: Any, instance_id: str) -> str:
    if explicit is not None and (not isinstance(explicit, str) or not explicit):
        raise TopologyError(
            f"subscriber {spec.display_name!r}: queue must be a non-empty string, got {explicit!r}"
        )
    if spec.broadcast:
        # The handler is in the name: two broadcast subscribers of one topic in one process
        # sharing a queue would each get part of the messages (and a tag filter would drop
        # the other's share).
        default = f"broadcast.{spec.topic}.{handler_name(spec.handler)}"
        name = f"{explicit or default}.{instance_id}"
    else:
        name = explicit or f"{spec.group or handler_name(spec.handler)}.{spec.topic}"
    return queue_name(name)


def _digest(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:12]


def queue_name(name: str, limit: int = _MAX_NAME - 24) -> str:
    """A valid AMQP queue name for ``name``, leaving room for a retry suffix.

    Queue names allow letters, digits and ``-_.:@#,/+`` and space: ``<locals>`` (in a
    handler's qualified name) loses its brackets, ``*`` (a topic wildcard) becomes
    ``star``, anything else becomes ``_`` plus a hash of the original so two names stay
    distinct; too long a name is cut and gets the hash too.
    """
    clean = name.replace("<", "").replace(">", "").replace("*", "star")
    clean, replaced = _INVALID.subn("_", clean)
    if replaced:
        clean = f"{clean}.{_digest(name)}"
    if len(clean.encode()) > limit:
        clean = clean.encode()[: limit - 13].decode(errors="ignore") + "." + _digest(name)
    return clean


def resolve_topology(
    spec: SubscriberSpec,
    *,
    default_exchange: str,
    default_exchange_type: str,
    default_prefetch: int,
    dead_letter_exchange: str,
    instance_id: str,
) -> SubscriberTopology:
    """Validate ``spec.options`` and resolve the queue, exchange and bindings to declare."""
    check_options(spec, KNOWN_OPTIONS, "rabbitmq")  # UnsupportedOptionError, like the others
    opts = dict(spec.options)
    exchange = opts.get("exchange", default_exchange)
    if not isinstance(exchange, str) or not exchange:
        raise TopologyError(
            f"subscriber {spec.display_name!r}: exchange must be a non-empty name (the default "
            f"exchange '' cannot be bound), got {exchange!r}"
        )
    fallback_type = default_exchange_type if exchange == default_exchange else "topic"
    exchange_type = opts.get("exchange_type", fallback_type)
    if exchange_type not in EXCHANGE_TYPES:
        raise TopologyError(
            f"subscriber {spec.display_name!r}: exchange_type must be one of "
            f"{sorted(EXCHANGE_TYPES)}, got {exchange_type!r}"
        )
    prefetch = opts.get("prefetch", default_prefetch)
    if (
        not isinstance(prefetch, int)
        or isinstance(prefetch, bool)
        or not 1 <= prefetch <= MAX_PREFETCH
    ):
        raise TopologyError(
            f"subscriber {spec.display_name!r}: prefetch must be an int between 1 and "
            f"{MAX_PREFETCH}, got {prefetch!r}"
        )
    if spec.concurrency < 1 or spec.concurrency > prefetch:
        raise TopologyError(
            f"subscriber {spec.display_name!r}: concurrency {spec.concurrency} must be between "
            f"1 and the prefetch ({prefetch}), or workers would sit idle"
        )
    arguments = opts.get("queue_arguments", {})
    if not isinstance(arguments, Mapping):
        raise TopologyError(
            f"subscriber {spec.display_name!r}: queue_arguments must be a mapping, "
            f"got {arguments!r}"
        )
    return SubscriberTopology(
        exchange=exchange,
        exchange_type=exchange_type,
        binding_keys=_binding_keys(spec, exchange_type, opts.get("routing_key")),
        queue=_queue_name(spec, opts.get("queue"), instance_id),
        broadcast=spec.broadcast,
        prefetch=prefetch,
        dead_letter_exchange=dead_letter_exchange,
        dlq=None if spec.dlq_topic is None else queue_name(spec.dlq_topic),
        dlq_routing_key=spec.dlq_topic,
        queue_arguments=dict(arguments),
        tags=tuple(sorted(spec.tags)),
    )
