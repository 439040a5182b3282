"""Checking transport-specific subscriber options against what a broker supports.

``SubscriberSpec.options`` holds knobs that only some brokers understand (``prefetch`` for
RabbitMQ, ``auto_offset_reset`` for Kafka and memory, ...). A broker that does not know an
option must refuse it loudly rather than ignore it; :func:`check_options` gives every broker
the same error. A broker declares what it accepts in a ``supported_options`` class attribute,
which lets :class:`~framework.broker.server.BrokerServer` check every subscriber before
subscribing any.
"""

from __future__ import annotations

from collections.abc import Collection

from framework.broker.subscriber import SubscriberSpec

__all__ = ["UnsupportedOptionError", "check_options"]


class UnsupportedOptionError(ValueError):
    """A subscriber uses an option (or feature) its broker does not support."""


def check_options(spec: SubscriberSpec, supported: Collection[str], kind: str) -> None:
    """Raise :class:`UnsupportedOptionError` naming the subscriber, the options and the broker."""
    unknown = sorted(set(spec.options) - set(supported))
    if unknown:
        accepted = ", ".join(sorted(supported)) or "none"
        raise UnsupportedOptionError(
            f"subscriber {spec.display_name} on {spec.topic!r}: option(s) "
            f"{', '.join(unknown)} not supported by the {kind or 'this'} broker "
            f"(it accepts: {accepted})"
        )
