"""The broker handle of :meth:`Broker.with_acks <framework.broker.broker.Broker.with_acks>`
(see :mod:`framework.broker.acks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.broker.acks import (
    Acks,
    OnPublishError,
    PublishMode,
    UnconfirmedFailures,
    publishing_at,
)
from framework.broker.broker import Broker, MessageProcessor, PublishResult, Subscription
from framework.broker.subscriber import SubscriberSpec

if TYPE_CHECKING:
    from framework.broker.batching import BatchingPublisher

__all__ = ["AcksView"]


class AcksView(Broker):
    """A broker handle publishing at ``acks`` (made by ``Broker.with_acks``).

    It shares the broker's connection: ``connect`` connects the broker, ``close`` does
    nothing (the broker owns the connection), ``subscribe`` and every other attribute are
    the broker's. Keyword arguments of ``publish`` go through unchanged.

    Its :meth:`batch_publisher` publishes at this handle's level too: the broker's own
    (native) batching publisher when the level is the broker's configured one, else one
    pipelining this handle's ``publish``. Either way the broker tracks it, so the broker's
    ``close`` (or the server's stop) flushes it.
    """

    def __init__(self, broker: Broker, acks: Acks, on_error: OnPublishError | None) -> None:
        self.broker = broker
        self.kind = broker.kind
        self.mode = PublishMode(acks, on_error)

    @property
    def default_acks(self) -> Acks:
        return self.mode.acks

    @property
    def acks(self) -> Acks:
        return self.mode.acks

    async def connect(self) -> None:
        await self.broker.connect()

    async def close(self) -> None:
        """Nothing: the broker's connection is the broker's to close."""

    async def publish(self, topic: str, body: bytes, **kwargs: Any) -> PublishResult:
        """The broker's ``publish``, at this handle's level."""
        with publishing_at(self.mode):
            return await self.broker.publish(topic, body, **kwargs)

    async def subscribe(self, spec: SubscriberSpec, processor: MessageProcessor) -> Subscription:
        return await self.broker.subscribe(spec, processor)

    def with_acks(self, acks: Acks, *, on_error: OnPublishError | None = None) -> Broker:
        """Another level on the same broker."""
        return self.broker.with_acks(acks, on_error=on_error)

    def batch_publisher(
        self,
        *,
        chunk_size: int = 1000,
        flush_interval: float = 0.005,
        max_pending: int = 100_000,
    ) -> BatchingPublisher:
        """A batching publisher at this handle's level (see the class docstring).

        Raises:
            ValueError: invalid sizes (see ``BatchingPublisher``).
            RuntimeError: the broker's native path when it is not connected.
        """
        if self.mode.acks == self.broker.default_acks and self.mode.on_error is None:
            return self.broker.batch_publisher(
                chunk_size=chunk_size, flush_interval=flush_interval, max_pending=max_pending
            )
        # The base pipelines self.publish (this level) and tracks it with
        # track_batch_publisher: the broker's, as the view's close does nothing.
        return super().batch_publisher(
            chunk_size=chunk_size, flush_interval=flush_interval, max_pending=max_pending
        )

    async def prepare_publish(self, topic: str) -> None:
        """The broker's lookups before a first publish to ``topic``."""
        await self.broker.prepare_publish(topic)

    def track_batch_publisher(self, publisher: BatchingPublisher) -> BatchingPublisher:
        """The broker tracks it (the view's ``close`` does nothing)."""
        return self.broker.track_batch_publisher(publisher)

    async def close_batch_publishers(self, timeout: float | None = None) -> None:
        """The broker's: every batching publisher made on it or on its handles."""
        await self.broker.close_batch_publishers(timeout)

    @property
    def unconfirmed(self) -> UnconfirmedFailures:
        return self.broker.unconfirmed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.broker, name)

    def __repr__(self) -> str:
        return f"AcksView({self.broker!r}, acks={self.acks!r})"
