"""The error every broker raises when a publish cannot be confirmed in time.

:class:`BrokerUnavailableError` is an :class:`framework.errors.Error` (503, reason
``BROKER_UNAVAILABLE``), so a handler that lets it escape answers HTTP 503 / gRPC
``UNAVAILABLE`` through the normal error mapping, within the broker's ``publish_timeout``
rather than hanging until the request's own timeout turns it into a 504.
"""

from __future__ import annotations

from framework.errors import Error

__all__ = ["BROKER_UNAVAILABLE", "BrokerUnavailableError"]

#: Reason of :class:`BrokerUnavailableError`.
BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"


class BrokerUnavailableError(Error):
    """A publish was not confirmed within ``publish_timeout`` seconds (broker down,
    unreachable or refusing): 503 ``BROKER_UNAVAILABLE``.

    ``metadata`` holds ``broker`` (its kind), ``topic`` and ``timeout`` (seconds).
    Broker-specific subclasses also inherit the broker's own publish error (e.g.
    RabbitMQ's ``PublishFailedError``).
    """

    def __init__(self, message: str, *, broker: str, topic: str, timeout: float) -> None:
        super().__init__(
            503,
            BROKER_UNAVAILABLE,
            message,
            {"broker": broker, "topic": topic, "timeout": f"{timeout:g}"},
        )
