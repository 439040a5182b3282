"""RabbitMQ transport: :class:`RabbitBroker` (aio-pika) for the framework's broker layer.

Mount a :class:`~framework.broker.router.Router` on it with the framework's broker server,
or build it from configuration with ``create_broker("rabbitmq", **options)``.
"""

from framework.transport.rabbitmq.broker import RabbitBroker
from framework.transport.rabbitmq.consumer import RabbitSubscription
from framework.transport.rabbitmq.errors import (
    MessageTooLargeError,
    PublishFailedError,
    PublishTimeoutError,
    RabbitUnavailableError,
    TopologyError,
    UnroutableError,
)
from framework.transport.rabbitmq.options import KNOWN_OPTIONS, SubscriberTopology

__all__ = [
    "KNOWN_OPTIONS",
    "MessageTooLargeError",
    "PublishFailedError",
    "PublishTimeoutError",
    "RabbitBroker",
    "RabbitSubscription",
    "RabbitUnavailableError",
    "SubscriberTopology",
    "TopologyError",
    "UnroutableError",
]
