"""The :class:`BrokerServer`: a :class:`~framework.transport.server.Server` that consumes.

It mounts transport-neutral routers on one broker (memory, Kafka, RabbitMQ): ``start``
connects the broker and subscribes every subscriber, ``stop_intake`` stops every subscription
taking new messages, ``stop`` drains every subscription and closes the broker. Give it to
:class:`framework.App` like any other server.

It reports its health (:class:`~framework.transport.server.HealthReporting`): a subscription
whose broker cannot recover it (see :mod:`framework.broker.health`) makes the server
unhealthy, which turns the App's readiness off until it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from framework.broker.broker import Broker, Subscription
from framework.broker.codec import Codec, JsonCodec
from framework.broker.health import Health
from framework.broker.options import check_options
from framework.broker.processor import SubscriberProcessor
from framework.broker.publisher import dead_letter
from framework.broker.router import Router, mark_mounted
from framework.broker.subscriber import SubscriberSpec
from framework.middleware.core import Middleware

__all__ = ["BrokerServer"]

_log = logging.getLogger("pykratos.broker")


class BrokerServer:
    """Consume the subscribers of ``routers`` from ``broker``.

    Args:
        broker: the broker; the server connects it on start and closes it on stop.
        routers: routers whose subscribers to mount.
        middlewares: middleware for every subscriber, outermost. A failing handler is
            retried then dead-lettered whatever the middleware; an ``Error(400)`` (e.g. from
            ``validate()``) is dead-lettered at once. ``access_log()`` logs every message:
            mind its cost on a high-volume topic.
        codec: decodes message bodies into each handler's payload type.
        name: readable name in logs and App errors.

    A broker may declare ``supported_options`` (subscriber options it accepts) and an
    ``endpoint`` (``kafka://host:port``); the server uses them when present.
    """

    def __init__(
        self,
        broker: Broker,
        routers: Sequence[Router] = (),
        middlewares: Iterable[Middleware] = (),
        codec: Codec | None = None,
        name: str = "",
    ) -> None:
        self.broker = broker
        self.routers = list(routers)
        _check_group_tags(self.subscribers)
        mark_mounted(self.routers)
        self.middlewares = tuple(middlewares)
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.name = name or broker.kind
        self._subscriptions: list[Subscription] = []
        self._connected = False
        self._health: list[Health] = []
        self._health_listeners: list[Callable[[], None]] = []

    @property
    def endpoint(self) -> str:
        """The broker's URL (``kafka://127.0.0.1:9092``), ``<kind>://`` if it has none."""
        endpoint = getattr(self.broker, "endpoint", None)
        return endpoint if isinstance(endpoint, str) and endpoint else f"{self.broker.kind}://"

    @property
    def subscribers(self) -> list[SubscriberSpec]:
        """Every subscriber this server mounts."""
        return [spec for router in self.routers for spec in router.subscribers]

    @property
    def health_problem(self) -> str | None:
        """Why a subscription cannot consume now (``None`` while every one can)."""
        problems = [health.problem for health in self._health if health.problem]
        return "; ".join(problems) if problems else None

    def watch_health(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever :attr:`health_problem` may have changed."""
        self._health_listeners.append(listener)

    def _health_changed(self) -> None:
        for listener in list(self._health_listeners):
            listener()

    def processors(self) -> list[SubscriberProcessor]:
        """Build (and so validate) one processor per subscriber without touching the broker.

        Raises on the first subscriber that cannot work: bad signature, unsupported payload
        type, unwired ``Provide``, or an option the broker does not support.
        """
        supported = getattr(self.broker, "supported_options", None)
        processors = []
        for spec in self.subscribers:
            if supported is not None:
                check_options(spec, supported, self.broker.kind)
            processors.append(
                SubscriberProcessor(
                    spec,
                    self.codec,
                    self.middlewares,
                    self.broker.kind,
                    endpoint=self.endpoint,
                    dead_letter_sink=partial(dead_letter, self.broker, spec),
                )
            )
        return processors

    async def start(self) -> None:
        """Validate every subscriber, connect, subscribe all; return once all are subscribed."""
        if self._connected:
            raise RuntimeError(f"broker server {self.name} is already started")
        mark_mounted(self.routers)  # routers appended since __init__ count as mounted too
        processors = self.processors()  # before connecting: fail fast on a wiring mistake
        if not processors:
            _log.warning("broker server %s has no subscribers", self.name)
        started = time.perf_counter()
        self._connected = True
        await self.broker.connect()
        results = await asyncio.gather(
            *(self.broker.subscribe(p.spec, p) for p in processors), return_exceptions=True
        )
        failure: BaseException | None = None
        for processor, result in zip(processors, results, strict=True):
            if isinstance(result, BaseException):
                _log.error(
                    "%s: cannot subscribe %s to %r: %r",
                    self.name,
                    processor.spec.display_name,
                    processor.spec.topic,
                    result,
                )
                failure = failure or result
            else:
                self._subscriptions.append(result)
                health = getattr(result, "health", None)
                if isinstance(health, Health):
                    health.watch(self._health_changed)
                    self._health.append(health)
        if failure is not None:
            raise failure
        _log.info(
            "broker server %s subscribed %d subscriber(s) on %s in %.0f ms",
            self.name,
            len(processors),
            self.endpoint,
            (time.perf_counter() - started) * 1000,
        )

    async def stop_intake(self) -> None:
        """Stop taking new messages on every subscription, all at once; return without
        waiting for the messages already taken (:meth:`stop` drains them).

        Kafka subscriptions stop fetching and RabbitMQ ones cancel their consumer, so what
        they did not take stays on the broker for the next consumer. A subscription without
        ``stop_intake`` (the memory broker's: its log dies with the process, so everything
        in it is work the App already accepted) keeps consuming until :meth:`stop` drains it.
        """
        pausing = [
            stop_intake()
            for s in self._subscriptions
            if (stop_intake := getattr(s, "stop_intake", None)) is not None
        ]
        results = await asyncio.gather(*pausing, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                _log.error("%s: a subscription failed to stop its intake: %r", self.name, result)

    async def stop(self, timeout: float) -> None:
        """Stop every subscription (each drains within ``timeout``), flush the broker's
        batching publishers within what is left of it, then close the broker.

        Safe when ``start`` failed half-way or never ran.
        """
        deadline = time.monotonic() + timeout
        subscriptions, self._subscriptions = self._subscriptions, []
        self._health = []
        results = await asyncio.gather(
            *(s.stop(timeout) for s in subscriptions), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                _log.error("%s: a subscription failed to stop: %r", self.name, result)
        if self._connected:
            self._connected = False
            # The final flush of batching publishers gets what is left of the timeout (their
            # unconfirmed messages then fail on their futures; at least half a second, for what is
            # already on the wire), the close at least a second.
            await self.broker.close_batch_publishers(max(deadline - time.monotonic(), 0.5))
            await asyncio.wait_for(self.broker.close(), max(deadline - time.monotonic(), 1.0))


def _check_group_tags(specs: Iterable[SubscriberSpec]) -> None:
    """Refuse members of one consumer group (same topic and group) with different ``tags``:
    the group shares the topic's messages among its members, and a member acknowledges,
    unhandled, a message its tags do not take, so a message that reached the other
    member's way was lost (RocketMQ's "subscription consistency" rule)."""
    seen: dict[tuple[str, str], SubscriberSpec] = {}
    for spec in specs:
        if spec.group is None or spec.broadcast:
            continue
        first = seen.setdefault((spec.topic, spec.group), spec)
        if first.tags != spec.tags:
            def shown(tags: frozenset[str]) -> str:
                return "every tag" if not tags else "tags " + ", ".join(sorted(tags))

            raise ValueError(
                f"subscribers {first.display_name!r} ({shown(first.tags)}) and "
                f"{spec.display_name!r} ({shown(spec.tags)}) share group {spec.group!r} on "
                f"topic {spec.topic!r}: the group's members share its messages, so each would "
                "drop what only the other takes; give them the same tags or different groups"
            )

