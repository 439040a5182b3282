"""NATS transport: :class:`NatsBroker` (nats-py, JetStream) for the framework's broker layer.

Mount a :class:`~framework.broker.router.Router` on it with the framework's broker server,
or build it from configuration with ``create_broker("nats", **options)``. Needs the ``nats``
extra (``pip install pykratos[nats]``).
"""

from framework.transport.nats.broker import NatsBroker
from framework.transport.nats.core import CoreSubscription
from framework.transport.nats.errors import NatsUnavailableError, PublishFailedError, StreamError
from framework.transport.nats.options import KNOWN_OPTIONS, SubscriberConfig
from framework.transport.nats.subscription import NatsSubscription

__all__ = [
    "KNOWN_OPTIONS",
    "CoreSubscription",
    "NatsBroker",
    "NatsSubscription",
    "NatsUnavailableError",
    "PublishFailedError",
    "StreamError",
    "SubscriberConfig",
]
