"""The transport-neutral message every broker hands to a subscriber."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Message"]


@dataclass(slots=True)
class Message:
    """One message as received (or about to be published).

    Attributes:
        body: the encoded payload.
        topic: destination: Kafka topic, RabbitMQ routing key / queue, memory topic.
        key: partitioning/ordering key (Kafka key; RabbitMQ and memory use it for ordering).
        headers: string headers that travel with the message.
        id: message id (broker-assigned or generated at publish).
        partition: Kafka partition (None elsewhere).
        offset: Kafka offset / memory sequence number (None for RabbitMQ).
        delivery_tag: RabbitMQ delivery tag (None elsewhere).
        timestamp: seconds since the epoch, as the broker reports it.
        attempt: 1 on first delivery, incremented on every retry.
        raw: the client library's own record (aiokafka ConsumerRecord, aio-pika
            IncomingMessage), for the rare handler that needs it.
    """

    body: bytes
    topic: str = ""
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    id: str = ""
    partition: int | None = None
    offset: int | None = None
    delivery_tag: int | None = None
    timestamp: float = 0.0
    attempt: int = 1
    raw: Any = None
