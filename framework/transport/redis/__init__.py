"""Redis transport: :class:`RedisBroker` (Redis Streams on redis-py asyncio) and its
:class:`RedisBatchingPublisher`, for the framework's broker layer.

Mount a :class:`~framework.broker.router.Router` on it with the framework's broker server,
or build it from configuration with ``create_broker("redis", url=..., **options)``.

Needs the ``redis`` extra (``pip install pykratos[redis]``).
"""

from framework.transport.redis.batching import RedisBatchingPublisher
from framework.transport.redis.broker import RedisBroker
from framework.transport.redis.errors import (
    PublishFailedError,
    PublishTimeoutError,
    RedisUnavailableError,
    StreamGroupError,
)
from framework.transport.redis.options import KNOWN_OPTIONS, RedisOptions, StreamSettings
from framework.transport.redis.subscription import RedisSubscription

__all__ = [
    "KNOWN_OPTIONS",
    "PublishFailedError",
    "PublishTimeoutError",
    "RedisBatchingPublisher",
    "RedisBroker",
    "RedisOptions",
    "RedisSubscription",
    "RedisUnavailableError",
    "StreamGroupError",
    "StreamSettings",
]
