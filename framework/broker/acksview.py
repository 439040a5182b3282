"""The broker handle of :meth:`Broker.with_acks <framework.broker.broker.Broker.with_acks>`
(see :mod:`framework.broker.acks`)."""

from __future__ import annotations

from typing import Any

from framework.broker.acks import (
    Acks,
    OnPublishError,
    PublishMode,
    UnconfirmedFailures,
    publishing_at,
)
from framework.broker.broker import Broker, MessageProcessor, PublishResult, Subscription
from framework.broker.subscriber import SubscriberSpec

__all__ = ["AcksView"]

#: Broker attributes that publish at the broker's configured level whatever the handle's.
_AT_CONFIGURED_LEVEL = frozenset({"batch_publisher"})


class AcksView(Broker):
    """A broker handle publishing at ``acks`` (made by ``Broker.with_acks``).

    It shares the broker's connection: ``connect`` connects the broker, ``close`` does
    nothing (the broker owns the connection), ``subscribe`` and every other attribute are
    the broker's. Keyword arguments of ``publish`` go through unchanged. A batching
    publisher (Kafka's ``batch_publisher``) publishes at the broker's configured level: on
    a handle at another level it is an ``AttributeError`` (so the outbox relay publishes
    one by one, at the handle's level), never a silent change of level.
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

    @property
    def unconfirmed(self) -> UnconfirmedFailures:
        return self.broker.unconfirmed

    def __getattr__(self, name: str) -> Any:
        if name in _AT_CONFIGURED_LEVEL and self.mode.acks != self.broker.default_acks:
            # A batching publisher runs on the broker's own producer, at its configured
            # level: handed out here it would silently publish at another level than this
            # handle's (an outbox relay would mark rows sent on acks=0).
            raise AttributeError(
                f"{name}: publishes at the {self.kind} broker's configured acks "
                f"({self.broker.default_acks!r}), not at this handle's {self.mode.acks!r}; "
                f"configure the broker with acks {self.mode.acks!r} to batch at that level"
            )
        return getattr(self.broker, name)

    def __repr__(self) -> str:
        return f"AcksView({self.broker!r}, acks={self.acks!r})"
