"""Joining and leaving a Kafka consumer group, with the workarounds each broker needs.

:func:`join` starts a group consumer (manual commits) on one topic and returns once the group
assigned its partitions and every partition's start position is resolved. When the broker
rejects ``session_timeout_ms`` (Apache Kafka's ``group.min.session.timeout.ms``) it retries
once with ``fallback_session_timeout_ms``. :func:`leave` leaves the group and closes the
consumer within a bound, so that a stop never hangs on a dead broker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import InvalidSessionTimeoutError, KafkaConnectionError, KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

from framework.transport.kafka.errors import KafkaJoinError, KafkaUnavailableError
from framework.transport.kafka.options import AutoOffsetReset, KafkaOptions

__all__ = ["OnAssigned", "OnRevoked", "join", "leave"]

#: Called with the member's new assignment (every partition it owns from now on).
OnAssigned = Callable[[Iterable[TopicPartition]], None]
#: Awaited with the partitions taken away, before the group hands them to another member.
OnRevoked = Callable[[Iterable[TopicPartition]], Awaitable[None]]

_log = logging.getLogger("pykratos.kafka")
# Leaving the group and closing the consumer must not hang a stop on a dead broker.
_CLOSE_TIMEOUT = 5.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_assigned: OnAssigned, on_revoked: OnRevoked) -> None:
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self.assigned = asyncio.Event()  # set by the first assignment: the join is complete

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._on_assigned(assigned)
        self.assigned.set()


async def join(
    options: KafkaOptions,
    *,
    group_id: str,
    topic: str | Sequence[str],
    auto_offset_reset: AutoOffsetReset,
    on_assigned: OnAssigned,
    on_revoked: OnRevoked,
) -> AIOKafkaConsumer:
    """Join ``group_id`` on ``topic``; return the started consumer once partitions are assigned.

    ``topic`` may be several topics (the Kafka delay relay consumes every delay level).

    Raises :class:`KafkaUnavailableError` when the cluster cannot be reached and
    :class:`KafkaJoinError` when no assignment arrives within ``options.join_timeout``; the
    consumer is closed on every failure.
    """

    async def attempt(session_timeout_ms: int) -> AIOKafkaConsumer:
        return await _join(
            options, session_timeout_ms, group_id, topic, auto_offset_reset, on_assigned, on_revoked
        )

    try:
        return await attempt(options.session_timeout_ms)
    except InvalidSessionTimeoutError:
        _log.warning(
            "broker rejected session_timeout_ms=%d for group %r (Apache Kafka's "
            "group.min.session.timeout.ms); retrying with %d",
            options.session_timeout_ms,
            group_id,
            options.fallback_session_timeout_ms,
        )
        return await attempt(options.fallback_session_timeout_ms)


async def _join(
    options: KafkaOptions,
    session_timeout_ms: int,
    group_id: str,
    topic: str | Sequence[str],
    auto_offset_reset: AutoOffsetReset,
    on_assigned: OnAssigned,
    on_revoked: OnRevoked,
) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.servers,
        client_id=options.client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=min(options.heartbeat_interval_ms, session_timeout_ms // 3),
        max_poll_interval_ms=options.max_poll_interval_ms,
        max_partition_fetch_bytes=options.max_partition_fetch_bytes,
        fetch_max_wait_ms=options.fetch_max_wait_ms,
        fetch_min_bytes=options.fetch_min_bytes,
        fetch_max_bytes=options.fetch_max_bytes,
        isolation_level=options.isolation_level,
        request_timeout_ms=options.request_timeout_ms,
        **options.security_kwargs(),
    )
    listener = _Listener(on_assigned, on_revoked)
    consumer.subscribe([topic] if isinstance(topic, str) else list(topic), listener=listener)
    started = time.monotonic()
    try:
        async with asyncio.timeout(options.join_timeout):
            await consumer.start()
            await listener.assigned.wait()
            # Resolve where each partition starts now: with "latest", a message published
            # after subscribe() returned must not fall before a lazily resolved position.
            for tp in consumer.assignment():
                await consumer.position(tp)
    except TimeoutError:
        await leave(consumer, group_id)
        raise KafkaJoinError(
            f"consumer group {group_id!r} got no partition assignment for topic {topic!r} "
            f"from {options.bootstrap_servers} within {options.join_timeout:g}s"
        ) from None
    except KafkaConnectionError as exc:
        await leave(consumer, group_id)
        elapsed = time.monotonic() - started
        raise KafkaUnavailableError(options.bootstrap_servers, exc, elapsed) from exc
    except BaseException:
        await leave(consumer, group_id)
        raise
    return consumer


async def leave(consumer: AIOKafkaConsumer, group_id: str) -> None:
    """Leave the group and stop ``consumer`` (bounded in time); errors are logged, not raised,
    so that closing never hides the outcome that led to it."""
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await _leave_generation_zero(consumer, group_id)
            await consumer.stop()
    except Exception as exc:
        _log.warning("error while closing Kafka consumer %r: %r", group_id, exc)


async def _leave_generation_zero(consumer: AIOKafkaConsumer, group_id: str) -> None:
    """Send the LeaveGroup that aiokafka skips when the group generation is 0.

    aiokafka only leaves a group whose generation is > 0 (Kafka starts at 1); Tansu starts at
    0, so without this a restarted member waits several seconds for its predecessor's session
    to expire before the group forms again. Reaches into aiokafka internals, guarded so that
    another aiokafka version merely skips it.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    client = getattr(consumer, "_client", None)
    if coordinator is None or client is None:
        return
    generation = getattr(coordinator, "generation", None)
    member_id = getattr(coordinator, "member_id", "")
    node_id = getattr(coordinator, "coordinator_id", None)
    if generation != 0 or not member_id or node_id is None:
        return
    await coordinator.close()  # stops heartbeats first; consumer.stop() then skips it
    try:
        await client.send(node_id, LeaveGroupRequest(group_id, member_id))
    except KafkaError as exc:
        _log.debug("LeaveGroup for %r failed: %r", group_id, exc)
