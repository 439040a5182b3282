"""The Broker contract and the processing contract between brokers and subscribers.

A :class:`Broker` moves bytes: ``publish`` returns once the broker confirmed; ``subscribe``
starts consuming one :class:`SubscriberSpec` and feeds each message to a
:class:`MessageProcessor`, which decodes it, runs the middleware chain and the handler with
retries, and returns a :class:`ProcessResult`. The broker then acks/commits (``ACK``) or
dead-letters then acks/commits (``DEAD``). A broker never acks/commits past a message whose
processing has not finished.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Protocol

from framework.broker.acks import (
    Acks,
    OnPublishError,
    UnconfirmedFailures,
    check_acks,
    describe_levels,
)
from framework.broker.message import Message
from framework.broker.subscriber import SubscriberSpec

if TYPE_CHECKING:
    from framework.broker.batching import BatchingPublisher

_log = logging.getLogger("pykratos.broker")

__all__ = [
    "Broker",
    "MessageProcessor",
    "Outcome",
    "ProcessResult",
    "PublishResult",
    "RetryLater",
    "Subscription",
]


class RetryLater(Exception):
    """Raised by :meth:`MessageProcessor.process` with ``retry_in_process=False`` when the
    handler failed but the retry policy allows another attempt: the broker should redeliver
    the message after ``delay`` seconds with ``attempt + 1`` (e.g. via a TTL retry queue)."""

    def __init__(self, delay: float, cause: BaseException) -> None:
        super().__init__(f"retry in {delay:.3f}s after {type(cause).__name__}: {cause}")
        self.delay = delay
        self.cause = cause


class Outcome(enum.Enum):
    """What a broker does with a processed message (or batch)."""

    ACK = "ack"  # handled: acknowledge / commit
    DEAD = "dead"  # undecodable, invalid, or retries exhausted: dead-letter, then ack/commit


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What happened to one message (or one batch)."""

    outcome: Outcome
    attempts: int = 1
    reason: str = ""  # human-readable cause for DEAD ("decode: ...", "ValueError: ...")
    error_type: str = ""  # exception class name for DEAD
    #: the handler's return value, encoded with the subscriber's codec, for a broker that
    #: answers requests (NATS request/reply); ``None`` when the handler returned ``None``.
    reply: bytes | None = None

    @classmethod
    def processor_failed(
        cls, spec: SubscriberSpec, exc: Exception, attempts: int = 1
    ) -> ProcessResult:
        """DEAD for a processor that raised instead of returning a result.

        Handler failures come back as results; an exception out of the processor is a bug
        in the pipeline itself. Brokers dead-letter the message (logged with the stack)
        rather than wedge a partition or hold a prefetch slot forever.
        """
        _log.error(
            "%s: processor raised instead of returning a result; dead-lettering",
            spec.display_name,
            exc_info=exc,
        )
        return cls(Outcome.DEAD, attempts, f"processor error: {exc!r}", type(exc).__name__)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where a published message landed (fields a broker does not have stay ``None``)."""

    topic: str
    partition: int | None = None
    offset: int | None = None
    message_id: str | None = None


class MessageProcessor(Protocol):
    """Implemented by the framework (``framework.broker``), called by each broker."""

    spec: SubscriberSpec

    async def process(self, message: Message, *, retry_in_process: bool = True) -> ProcessResult:
        """Decode, run middleware and the handler; retry with backoff in process unless told
        not to (then a failure returns DEAD with ``attempts=message.attempt`` only when the
        retry policy is exhausted, and raises :class:`RetryLater` otherwise)."""
        ...

    async def process_batch(self, messages: Sequence[Message]) -> ProcessResult:
        """Same for a batch handler: the batch succeeds or fails as a whole."""
        ...


class Subscription(Protocol):
    """A running subscription returned by :meth:`Broker.subscribe`.

    It may also have ``async def stop_intake(self) -> None``: stop taking new messages at once
    (stop fetching, cancel the consumer) without waiting for those already taken, which
    ``stop`` then drains. The broker server calls it when the App's stop begins.
    """

    async def stop(self, timeout: float) -> None:
        """Stop intake, wait up to ``timeout`` for in-flight messages, ack/commit what
        finished; unfinished messages are left unacked (they will be redelivered)."""
        ...


class Broker(ABC):
    """A message broker connection: memory, Kafka or RabbitMQ."""

    #: transport kind used in the transport context ("memory", "kafka", "rabbitmq", "mqtt").
    kind: str = ""
    #: acknowledgement levels ``publish`` can run at (:mod:`framework.broker.acks`): level ->
    #: ``"native"`` or ``"emulated: <how>"``; a level not listed is refused by :meth:`with_acks`.
    acks_levels: ClassVar[Mapping[Acks, str]] = {"all": "native"}

    @property
    def default_acks(self) -> Acks:
        """The level ``publish`` runs at unless a :meth:`with_acks` handle says otherwise
        (the broker's configuration)."""
        return "all"

    @property
    def unconfirmed(self) -> UnconfirmedFailures:
        """Failures of this broker's fire-and-forget publishes (counted and logged)."""
        found: UnconfirmedFailures | None = self.__dict__.get("_broker_unconfirmed_failures")
        if found is None:
            found = self.__dict__["_broker_unconfirmed_failures"] = UnconfirmedFailures(self.kind)
        return found

    def with_acks(self, acks: Acks, *, on_error: OnPublishError | None = None) -> Broker:
        """A handle on this broker (same connection) whose ``publish`` runs at ``acks``;
        ``on_error(topic, error)`` gets the failures of its fire-and-forget publishes that
        are known only after ``publish`` returned (they are also counted in
        :attr:`unconfirmed` and logged). ``Publisher(broker, acks=...)`` uses it.

        Raises:
            ValueError: not a level (``none``, ``leader``, ``all``).
            NotImplementedError: a level this broker cannot publish at (the message says
                which it can).
        """
        from framework.broker.acksview import AcksView

        level = check_acks(acks)
        if level not in self.acks_levels:
            raise NotImplementedError(
                f"the {self.kind or type(self).__name__} broker cannot publish with "
                f"acks={level!r}; it supports {describe_levels(self.acks_levels)}"
            )
        return AcksView(self, level, on_error)

    @abstractmethod
    async def connect(self) -> None:
        """Open connections; raise with a clear message if the broker is unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Flush pending publishes and close; safe to call twice or before connect."""

    @abstractmethod
    async def publish(
        self,
        topic: str,
        body: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        deliver_at: datetime | None = None,
        partition: int | None = None,
        tag: str | None = None,
    ) -> PublishResult:
        """Publish and return once the broker confirmed at :attr:`default_acks` (or the
        level of a :meth:`with_acks` handle; at once for ``"none"``).

        ``delay`` (seconds) or ``deliver_at`` (a timezone-aware datetime) defers delivery
        where the broker supports it and raises ``NotImplementedError`` with an explanation
        where it does not: never ignored. Both are checked by
        :func:`framework.broker.schedule.due_time` (``ValueError`` for both at once, a
        negative delay or a naive datetime; a past ``deliver_at`` means now).
        ``tag`` labels the message for subscribers filtering on tags (sent as the ``x-tag``
        header, see :mod:`framework.broker.tags`); ``ValueError`` for an invalid tag.
        ``partition`` puts the message on that partition (Kafka, memory: the key then only
        travels with it); a broker without partitions raises ``NotImplementedError``, and
        a partition the topic does not have is a ``ValueError``.
        """

    @abstractmethod
    async def subscribe(self, spec: SubscriberSpec, processor: MessageProcessor) -> Subscription:
        """Start consuming ``spec``; return once subscribed (consumer joined / queue bound)."""

    # -- batching publishers -----------------------------------------------------------------

    def batch_publisher(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
    ) -> BatchingPublisher:
        """A :class:`~framework.broker.batching.BatchingPublisher` on this broker (go-queue's
        pusher, Sarama's async producer): ``submit`` returns a future per message, chunks of
        ``chunk_size`` leave at once or ``flush_interval`` seconds after their first message,
        and ``submit`` waits while ``max_pending`` messages are unresolved.

        It is flushed and closed with the broker (:meth:`close_batch_publishers`). This
        default pipelines :meth:`publish` (every message of a chunk in flight at once, each
        confirmation resolving its message); a broker with a cheaper native path overrides it.

        Raises:
            ValueError: invalid sizes (see ``BatchingPublisher``). A broker that is not
            connected fails each message's future with its ``publish`` error (an override
            with a native path raises ``RuntimeError`` here at once).
        """
        from framework.broker.batching import PipelinedPublisher

        async def send(
            topic: str,
            body: bytes,
            key: bytes | None,
            headers: Mapping[str, str] | None,
            partition: int | None,
        ) -> PublishResult:
            if partition is None:  # a subclass's publish may predate partition=
                return await self.publish(topic, body, key=key, headers=headers)
            return await self.publish(topic, body, key=key, headers=headers, partition=partition)

        return self.track_batch_publisher(
            PipelinedPublisher(
                send,
                prepare=self.prepare_publish,
                chunk_size=chunk_size,
                flush_interval=flush_interval,
                max_pending=max_pending,
                name=f"{self.kind or 'broker'}-batch-publisher",
            )
        )

    async def prepare_publish(self, topic: str) -> None:
        """Await what a first :meth:`publish` to ``topic`` would wait for before writing
        (a stream lookup, an exchange check), so that publishes started afterwards write in
        call order without waiting: the default batching publisher relies on it for per-key
        order. Default: nothing (the broker's ``publish`` writes at once).

        Raises whatever such a publish would raise for ``topic`` (no stream, no exchange).
        """
        return None  # deliberately empty: a hook, not an abstract method

    def track_batch_publisher(self, publisher: BatchingPublisher) -> BatchingPublisher:
        """Remember ``publisher`` so :meth:`close_batch_publishers` flushes it; returns it."""
        publishers: list[BatchingPublisher] = self.__dict__.setdefault("_batch_publishers", [])
        # Closed ones need nothing more: forgotten, so making one per task does not pile up.
        publishers[:] = [p for p in publishers if not p.closed]
        publishers.append(publisher)
        return publisher

    async def close_batch_publishers(self, timeout: float | None = None) -> None:
        """Flush and close every batching publisher made by :meth:`batch_publisher`, all at
        once, within ``timeout`` seconds (``None``: each one's own ``close_timeout``); what
        is still unconfirmed then fails with ``BatchFlushTimeoutError`` on its future.

        Every broker's ``close`` calls it first; :class:`~framework.broker.BrokerServer` calls
        it on stop with what is left of the stop timeout, before closing the broker.
        """
        publishers: list[BatchingPublisher] = self.__dict__.pop("_batch_publishers", [])
        if not publishers:
            return
        results = await asyncio.gather(
            *(publisher.close(timeout) for publisher in publishers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):  # results were reported on each message's future
                _log.warning("error while flushing a batching publisher: %r", result)
