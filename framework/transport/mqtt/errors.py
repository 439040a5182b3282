"""Errors raised by the MQTT broker, each with a message that says what to check."""

from __future__ import annotations

__all__ = ["MqttUnavailableError", "PublishFailedError", "TopicError"]


class MqttUnavailableError(ConnectionError):
    """The MQTT server could not be reached, or refused the CONNECT, within the timeout."""


class TopicError(ValueError):
    """A topic name or filter MQTT does not allow (a wildcard in a publish topic, ``#`` not
    last, a shared-subscription group with ``/``), or a subscription the server refused
    (SUBACK reason code >= 0x80)."""


class PublishFailedError(RuntimeError):
    """A publish was refused by the server (PUBACK/PUBREC reason code >= 0x80) or not
    acknowledged within ``publish_timeout``."""
