"""Which publish failures are permanent: the relay dead-letters those and retries the rest.

Transient (retried with backoff, forever: nothing is dropped while a broker is down): the
broker is unavailable (:class:`~framework.broker.errors.BrokerUnavailableError`), a
connection broke, a timeout, anything not listed below.

Permanent (the same message is refused the same way on every attempt, so retrying would
block its key for good):

- Kafka: a non-retriable broker error (:func:`framework.transport.kafka.deadletter.is_permanent`:
  record too large, invalid topic, authorization);
- RabbitMQ: the message is larger than the broker accepts, or a mandatory publish matched no
  queue (:mod:`framework.transport.rabbitmq.errors`);
- any broker: a 4xx :class:`~framework.errors.Error`, or the message itself is invalid for it
  (``ValueError``, ``TypeError``, ``UnicodeError`` from a header no bytes encode to,
  ``NotImplementedError`` for a feature the broker lacks), or the publisher may not write
  to it (``PermissionError``).
"""

from __future__ import annotations

from framework.broker.errors import BrokerUnavailableError
from framework.errors import Error

__all__ = ["is_permanent_publish_error"]

_PERMANENT_BUILTINS = (
    ValueError,
    TypeError,
    UnicodeError,
    NotImplementedError,
    LookupError,
    PermissionError,  # the broker refuses this publisher that topic (NATS permissions)
)


def is_permanent_publish_error(exc: BaseException) -> bool:
    """True when ``exc`` from ``Broker.publish`` will recur on every retry (see the module)."""
    if isinstance(exc, BrokerUnavailableError):
        return False
    if isinstance(exc, Error):
        return 400 <= exc.code < 500
    if isinstance(exc, _PERMANENT_BUILTINS):
        return True
    try:
        from framework.transport.kafka.deadletter import is_permanent as kafka_permanent
    except ImportError:  # the kafka extra is not installed
        pass
    else:
        if kafka_permanent(exc):
            return True
    try:
        from framework.transport.rabbitmq.errors import MessageTooLargeError, UnroutableError
    except ImportError:  # the rabbitmq extra is not installed
        return False
    return isinstance(exc, MessageTooLargeError | UnroutableError)
