"""What ``@router.subscriber(...)`` records: a plain description of one subscription.

The decorator only attaches this metadata (Nameko style); the handler stays a plain function
that a unit test can call directly. Brokers read the spec to subscribe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from framework.broker.policy import BatchPolicy, RetryPolicy, default_dlq_topic
from framework.middleware.core import Middleware

__all__ = ["SubscriberSpec"]


@dataclass(frozen=True, slots=True)
class SubscriberSpec:
    """One subscription of one handler.

    Attributes:
        topic: what to consume (Kafka topic; RabbitMQ routing key / queue; memory topic).
        handler: the user's function (``async def h(event: Model, ...) -> None``).
        group: consumer group (Kafka group id; RabbitMQ shared queue name; memory group).
            Two specs with the same topic and different groups each get every message.
        concurrency: concurrent workers; order is kept per key (per partition on Kafka).
        retry: retry policy before dead-lettering.
        dlq: dead-letter destination; ``None`` means ``<topic>.dlq``; ``""`` disables
            dead-lettering (a message that exhausts retries is logged and acknowledged: an
            explicit opt-out of at-least-once for that subscriber).
        batch: deliver lists of messages to a batch handler (``list[Model]``).
        broadcast: every instance gets every message (Kafka: a unique group per instance;
            RabbitMQ: an exclusive auto-delete queue per instance).
        options: transport-specific knobs, read by the broker that supports them and
            rejected by the others: e.g. ``exchange``, ``exchange_type``, ``prefetch``
            (RabbitMQ), ``auto_offset_reset`` (Kafka).
        name: a readable name for logs; the handler's qualified name by default.
        middlewares: middleware applied to this subscriber only, inside the server's own
            (router-level middleware is prepended here by the router).
        tags: the message tags this subscriber receives (:mod:`framework.broker.tags`);
            empty: every message, tagged or not.
    """

    topic: str
    handler: Callable[..., Any]
    group: str | None = None
    concurrency: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dlq: str | None = None
    batch: BatchPolicy | None = None
    broadcast: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    middlewares: tuple[Middleware, ...] = ()
    tags: frozenset[str] = frozenset()

    @property
    def dlq_topic(self) -> str | None:
        """The resolved dead-letter destination, or ``None`` when disabled."""
        if self.dlq == "":
            return None
        return self.dlq or default_dlq_topic(self.topic)

    @property
    def display_name(self) -> str:
        """``name``, else the handler's qualified name: how logs and errors name it."""
        return self.name or getattr(self.handler, "__qualname__", repr(self.handler))
