"""Several :class:`~framework.broker.Broker` handles on one in-process memory broker.

The suite makes a new broker per server and per publisher, as separate processes would.
Separate :class:`~framework.broker.MemoryBroker` objects share nothing, so the memory suite
hands out :class:`MemoryBrokerView` objects over one shared broker instead: each view
publishes and subscribes on it, and its ``close`` stops only its own subscriptions (closing
the shared broker would end every other "process" too).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from framework.broker.broker import Broker, MessageProcessor, PublishResult, Subscription
from framework.broker.memory import MemoryBroker
from framework.broker.subscriber import SubscriberSpec

__all__ = ["MemoryBrokerView"]


class MemoryBrokerView(Broker):
    """A connection-like handle on ``shared`` (see the module docstring)."""

    kind = "memory"
    supported_options = MemoryBroker.supported_options
    acks_levels = MemoryBroker.acks_levels

    def __init__(self, shared: MemoryBroker, name: str = "view") -> None:
        self.shared = shared
        self.name = name
        self._subscriptions: list[Subscription] = []

    @property
    def endpoint(self) -> str:
        return self.shared.endpoint

    async def connect(self) -> None:
        await self.shared.connect()

    async def close(self) -> None:
        """Flush this view's batching publishers, then stop its subscriptions still running
        (at once, like a closed connection)."""
        await self.close_batch_publishers()
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.stop(0)

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
        return await self.shared.publish(
            topic,
            body,
            key=key,
            headers=headers,
            delay=delay,
            deliver_at=deliver_at,
            partition=partition,
            tag=tag,
        )

    async def subscribe(self, spec: SubscriberSpec, processor: MessageProcessor) -> Subscription:
        subscription = await self.shared.subscribe(spec, processor)
        self._subscriptions.append(subscription)
        return subscription

    def __repr__(self) -> str:
        return f"MemoryBrokerView({self.name!r} on {self.shared!r})"
