"""Checking transport-specific subscriber options against what a broker supports.

``SubscriberSpec.options`` holds knobs that only some brokers understand (``prefetch`` for
RabbitMQ, ``auto_offset_reset`` for Kafka and memory, ...). A broker that does not know an
option must refuse it loudly rather than ignore it; :func:`check_options` gives every broker
the same error. A broker declares what it accepts in a ``supported_options`` class attribute,
which lets :class:`~framework.broker.server.BrokerServer` check every subscriber before
subscribing any. :func:`option_choice` reads an option that takes one of a few values.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, TypeVar, cast

from framework.broker.subscriber import SubscriberSpec

__all__ = ["AutoOffsetReset", "UnsupportedOptionError", "check_options", "option_choice"]

#: Where a consumer group without a committed position starts (memory and Kafka brokers).
AutoOffsetReset = Literal["earliest", "latest"]

_T = TypeVar("_T")


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


def option_choice(spec: SubscriberSpec, name: str, choices: tuple[_T, ...], default: _T) -> _T:
    """``spec.options[name]``, ``default`` when absent; :class:`UnsupportedOptionError` naming
    the subscriber and the valid values when it is not one of ``choices``."""
    value = spec.options.get(name, default)
    # True == 1 and 1.0 == 1: only the choices' own types are accepted.
    if value not in choices or type(value) not in {type(choice) for choice in choices}:
        raise UnsupportedOptionError(
            f"subscriber {spec.display_name} on {spec.topic!r}: {name} must be one of "
            f"{', '.join(map(str, choices))}, got {value!r}"
        )
    return cast(_T, value)
