"""MQTT 5 transport: :class:`MqttBroker` (aiomqtt on paho-mqtt) for the framework's broker layer.

Mount a :class:`~framework.broker.router.Router` on it with the framework's broker server,
or build it from configuration with ``create_broker("mqtt", **options)``.
"""

from framework.transport.mqtt.broker import DLQ_SUFFIX, MqttBroker
from framework.transport.mqtt.errors import MqttUnavailableError, PublishFailedError, TopicError
from framework.transport.mqtt.options import KNOWN_OPTIONS, SubscriberFilter
from framework.transport.mqtt.subscription import MqttSubscription

__all__ = [
    "DLQ_SUFFIX",
    "KNOWN_OPTIONS",
    "MqttBroker",
    "MqttSubscription",
    "MqttUnavailableError",
    "PublishFailedError",
    "SubscriberFilter",
    "TopicError",
]
