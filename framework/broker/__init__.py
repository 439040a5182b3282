"""Transport-neutral messaging: routers, codecs, publishing, delivery policy, memory broker.

Declare subscribers on a :class:`Router`, mount it on a :class:`BrokerServer` over any
:class:`Broker` (``create_broker("memory" | "kafka" | "rabbitmq" | "mqtt", ...)``), publish
with a :class:`Publisher`. Kafka, RabbitMQ and MQTT live in ``framework.transport.kafka`` /
``framework.transport.rabbitmq`` / ``framework.transport.mqtt`` and need their extras.
"""

from framework.broker.acks import Acks, OnPublishError, UnconfirmedFailures
from framework.broker.batching import (
    BatchFlushTimeoutError,
    BatchingPublisher,
    BatchPublisherClosedError,
)
from framework.broker.broker import (
    Broker,
    MessageProcessor,
    Outcome,
    ProcessResult,
    PublishResult,
    RetryLater,
    Subscription,
)
from framework.broker.codec import (
    BytesCodec,
    Codec,
    DecodeError,
    JsonCodec,
    ProtobufCodec,
    StrCodec,
)
from framework.broker.errors import BROKER_UNAVAILABLE, BrokerUnavailableError
from framework.broker.factory import BROKER_KINDS, create_broker
from framework.broker.health import Health
from framework.broker.memory import MemoryBroker
from framework.broker.message import MESSAGE_ID, TAG_HEADER, Message, header_bytes, header_text
from framework.broker.options import (
    AutoOffsetReset,
    UnsupportedOptionError,
    check_options,
    option_choice,
)
from framework.broker.policy import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    BatchPolicy,
    RetryPolicy,
)
from framework.broker.processor import SubscriberProcessor
from framework.broker.publisher import Publisher, PublisherBatch, PublisherSpec, dead_letter
from framework.broker.router import Router
from framework.broker.server import BrokerServer
from framework.broker.signature import WiringError
from framework.broker.subscriber import SubscriberSpec

__all__ = [
    "BROKER_KINDS",
    "BROKER_UNAVAILABLE",
    "DLQ_ATTEMPTS",
    "DLQ_ERROR_TYPE",
    "DLQ_ORIGINAL_OFFSET",
    "DLQ_ORIGINAL_PARTITION",
    "DLQ_ORIGINAL_TOPIC",
    "DLQ_REASON",
    "MESSAGE_ID",
    "TAG_HEADER",
    "Acks",
    "AutoOffsetReset",
    "BatchFlushTimeoutError",
    "BatchPolicy",
    "BatchPublisherClosedError",
    "BatchingPublisher",
    "Broker",
    "BrokerServer",
    "BrokerUnavailableError",
    "BytesCodec",
    "Codec",
    "DecodeError",
    "Health",
    "JsonCodec",
    "MemoryBroker",
    "Message",
    "MessageProcessor",
    "OnPublishError",
    "Outcome",
    "ProcessResult",
    "ProtobufCodec",
    "PublishResult",
    "Publisher",
    "PublisherBatch",
    "PublisherSpec",
    "RetryLater",
    "RetryPolicy",
    "Router",
    "StrCodec",
    "SubscriberProcessor",
    "SubscriberSpec",
    "Subscription",
    "UnconfirmedFailures",
    "UnsupportedOptionError",
    "WiringError",
    "check_options",
    "create_broker",
    "dead_letter",
    "header_bytes",
    "header_text",
    "option_choice",
]
