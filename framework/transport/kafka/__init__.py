"""Kafka transport (aiokafka): :class:`KafkaBroker` and its :class:`BatchingPublisher`.

Mount routers on it with :class:`framework.broker.server.BrokerServer`::

    server = BrokerServer(KafkaBroker("127.0.0.1:9092"), routers=[router])

Needs the ``kafka`` extra (``pip install pykratos[kafka]``).
"""

from framework.transport.kafka.broker import KafkaBroker
from framework.transport.kafka.errors import (
    KafkaJoinError,
    KafkaProducerError,
    KafkaPublishTimeoutError,
    KafkaUnavailableError,
)
from framework.transport.kafka.offsets import PartitionOffsets
from framework.transport.kafka.options import KafkaOptions
from framework.transport.kafka.partitioner import Partitioner, PartitionerFn, key_partition
from framework.transport.kafka.publisher import BatchingPublisher
from framework.transport.kafka.subscription import KafkaSubscription

__all__ = [
    "BatchingPublisher",
    "KafkaBroker",
    "KafkaJoinError",
    "KafkaOptions",
    "KafkaProducerError",
    "KafkaPublishTimeoutError",
    "KafkaSubscription",
    "KafkaUnavailableError",
    "PartitionOffsets",
    "Partitioner",
    "PartitionerFn",
    "key_partition",
]
