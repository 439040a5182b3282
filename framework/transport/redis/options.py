"""Every knob of the Redis broker, with its default, in one place, and the subscriber options.

Choices made here (and why):

* ``start_id="0"``: a consumer group created by a subscriber starts at the beginning of the
  stream, so what was published before the first subscriber of a group started is delivered
  (at-least-once from the first publish). FastStream creates a missing group at ``$`` (new
  messages only); pass ``start_id="$"`` for that. An existing group keeps its position.
* acks are batched: finished entries are acknowledged with one ``XACK`` per read (sent in the
  same pipeline as the next ``XREADGROUP``) or every ``ack_interval`` seconds while idle.
  ``XACK`` names each id, so unlike Kafka offsets or AMQP ``multiple`` acks, acking a finished
  entry never acknowledges an earlier unfinished one.
* entries left pending by a consumer that died are taken over with ``XAUTOCLAIM`` once idle
  for ``claim_idle_ms``; a running handler keeps its entries fresh (``XCLAIM ... JUSTID``)
  so a live consumer's slow message is never taken from it.

Subscriber options (``@router.subscriber(..., options={...})``; anything else is refused with
:class:`~framework.broker.options.UnsupportedOptionError`):

``start_id``
    where the group starts if this subscriber creates it (default: the broker's ``start_id``).
``prefetch``
    entries read but not acknowledged yet, at most (default: the broker's ``prefetch``).
``claim_idle_ms``
    idle time after which another consumer's pending entries are claimed (default: the
    broker's ``claim_idle_ms``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from framework.broker.addresses import check_url
from framework.broker.options import UnsupportedOptionError, check_options
from framework.broker.subscriber import SubscriberSpec
from framework.checks import check_counts, check_seconds

__all__ = ["KNOWN_OPTIONS", "RedisOptions", "StreamSettings", "resolve_settings"]

#: Subscriber options the Redis broker reads.
KNOWN_OPTIONS = frozenset({"start_id", "prefetch", "claim_idle_ms"})
_INT64_MAX = 2**63 - 1
_STREAM_ID = re.compile(r"^(\$|0|\d+(-\d+)?)$")


def _check_start_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _STREAM_ID.match(value):
        raise ValueError(
            f"{where}: start_id must be '0' (whole stream), '$' (new entries only) or a "
            f"stream id such as '1700000000000-0', got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """Options of :class:`~framework.transport.redis.RedisBroker` (see the module docstring).

    Numbers are checked at construction (``ValueError`` naming the option): seconds are
    finite, > 0 and at most :data:`~framework.checks.MAX_SECONDS`; counts and ``*_ms`` values
    are ints >= 1 (up to 2**63 - 1 for what Redis reads as a 64-bit integer).

    Attributes:
        url: Redis URL (``redis://[:password@]host:port/db``, ``rediss://`` for TLS).
        key_prefix: prepended to every stream name (topic) this broker reads or writes,
            e.g. ``"orders-svc:"``: a namespace on a shared Redis.
        client_name: connection name shown by ``CLIENT LIST``.
        connect_timeout: seconds ``connect`` (and each reconnection) may take.
        socket_timeout: seconds a reply may take; must exceed ``block_ms``.
        reconnect_interval: seconds between reconnection attempts of a subscription.
        publish_timeout: seconds a publish keeps retrying while Redis is unreachable before
            raising ``PublishTimeoutError`` (503 ``BROKER_UNAVAILABLE``): keep it below your
            request timeout.
        maxlen: trim each stream published to at about this many entries (``MAXLEN ~``).
        minid_age: trim entries older than this many seconds on publish (``MINID ~`` now
            minus the age); exclusive with ``maxlen``.
        approximate_trim: trim with ``~`` (whole macro nodes: far cheaper, keeps a few more).
        start_id: where a consumer group created by a subscriber starts: ``"0"`` (the whole
            stream: at-least-once from the first publish), ``"$"`` (new entries only, as
            FastStream) or an entry id.
        read_count: entries per ``XREADGROUP`` (``COUNT``).
        block_ms: how long one ``XREADGROUP`` waits for entries (``BLOCK``); also bounds how
            long a stop waits for the read in progress.
        prefetch: entries of one subscription read and not acknowledged yet, at most.
        ack_batch: acknowledge as soon as this many entries finished ...
        ack_interval: ... or this many seconds after the first unacknowledged one finished.
        claim_idle_ms: entries pending this long on another consumer (a dead one) are claimed
            with ``XAUTOCLAIM`` and handled here.
        claim_interval: seconds between two claim rounds (also how often running entries are
            kept fresh: keep it well below ``claim_idle_ms``).
        dlq_retry_backoff: first wait (seconds, doubled up to 5 s) before retrying a failed
            dead-letter publish; the entry stays pending meanwhile, never dropped.
        delay_relay: who moves delayed entries from the schedule into their streams
            (:mod:`~framework.transport.redis.schedule`): ``None`` (the default) runs the
            mover in a broker once it subscribes to anything (so consuming services move
            them); ``True`` from ``connect``; ``False`` never (another process must).
            Entries wait in Redis while no mover runs.
        schedule_idle: the longest a mover sleeps without looking at the schedule (seconds):
            a safety net for a wake-up published while its pub/sub connection was down.
    """

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = ""
    client_name: str = "pykratos"
    connect_timeout: float = 5.0
    socket_timeout: float = 10.0
    reconnect_interval: float = 1.0
    publish_timeout: float = 5.0
    maxlen: int | None = None
    minid_age: float | None = None
    approximate_trim: bool = True
    start_id: str = "0"
    read_count: int = 256
    block_ms: int = 1_000
    prefetch: int = 1_024
    ack_batch: int = 256
    ack_interval: float = 0.05
    claim_idle_ms: int = 30_000
    claim_interval: float = 5.0
    dlq_retry_backoff: float = 0.2
    delay_relay: bool | None = None
    schedule_idle: float = 5.0

    def __post_init__(self) -> None:
        _check_start_id(self.start_id, "RedisOptions")
        check_url("url", self.url, ("redis", "rediss", "unix"), hostless=("unix",))
        owner = "RedisOptions"
        check_seconds(
            owner,
            connect_timeout=self.connect_timeout,
            socket_timeout=self.socket_timeout,
            reconnect_interval=self.reconnect_interval,
            publish_timeout=self.publish_timeout,
            ack_interval=self.ack_interval,
            claim_interval=self.claim_interval,
            dlq_retry_backoff=self.dlq_retry_backoff,
            schedule_idle=self.schedule_idle,
        )
        if self.minid_age is not None:
            check_seconds(owner, minid_age=self.minid_age)
        # Redis reads COUNT, BLOCK, MAXLEN and idle times as 64-bit integers.
        check_counts(
            owner,
            maximum=_INT64_MAX,
            read_count=self.read_count,
            block_ms=self.block_ms,
            claim_idle_ms=self.claim_idle_ms,
        )
        check_counts(owner, prefetch=self.prefetch, ack_batch=self.ack_batch)
        if self.maxlen is not None:
            check_counts(owner, maximum=_INT64_MAX, maxlen=self.maxlen)
        if self.maxlen is not None and self.minid_age is not None:
            raise ValueError("maxlen and minid_age are exclusive: XADD trims by one strategy")
        if self.block_ms >= self.socket_timeout * 1000:
            raise ValueError(
                f"block_ms ({self.block_ms}) must be below socket_timeout "
                f"({self.socket_timeout:g}s), or every idle read would time out"
            )
        if self.claim_interval * 1000 >= self.claim_idle_ms:
            raise ValueError(
                "claim_interval must be well below claim_idle_ms: running entries are kept "
                "fresh once per claim_interval"
            )


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What one subscription reads, resolved from its spec and the broker options."""

    stream: str  # the Redis key (key_prefix + topic)
    group: str | None  # None: broadcast (plain XREAD, no group)
    start_id: str
    prefetch: int
    claim_idle_ms: int


def _int_option(spec: SubscriberSpec, name: str, default: int) -> int:
    value = spec.options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UnsupportedOptionError(
            f"subscriber {spec.display_name} on {spec.topic!r}: {name} must be an int >= 1, "
            f"got {value!r}"
        )
    return value


def resolve_settings(spec: SubscriberSpec, options: RedisOptions, group: str) -> StreamSettings:
    """Validate ``spec.options`` and resolve the stream, group and limits of a subscription.

    ``group`` is the consumer group for a clustering subscriber (ignored for broadcast).
    """
    check_options(spec, KNOWN_OPTIONS, "redis")
    try:
        start_id = _check_start_id(
            spec.options.get("start_id", options.start_id), f"subscriber {spec.display_name}"
        )
    except ValueError as exc:
        raise UnsupportedOptionError(str(exc)) from None
    prefetch = _int_option(spec, "prefetch", options.prefetch)
    if spec.concurrency > prefetch:
        raise UnsupportedOptionError(
            f"subscriber {spec.display_name}: concurrency {spec.concurrency} exceeds the "
            f"prefetch ({prefetch}), so workers would sit idle"
        )
    return StreamSettings(
        stream=options.key_prefix + spec.topic,
        group=None if spec.broadcast else group,
        start_id=start_id,
        prefetch=prefetch,
        claim_idle_ms=_int_option(spec, "claim_idle_ms", options.claim_idle_ms),
    )
