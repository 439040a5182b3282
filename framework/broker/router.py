"""The transport-neutral :class:`Router`: declare subscribers in the service layer.

::

    router = Router()

    @router.subscriber("payment-success", group="order-svc", retry=5)
    @inject
    async def on_payment(event: PaymentSucceeded, orders: OrderUseCase = Provide[...]) -> None:
        await orders.mark_paid(event.order_id)

The decorator only records a :class:`~framework.broker.subscriber.SubscriberSpec` and returns
the function unchanged, so a unit test can call ``await on_payment(event, orders=fake)``. The
same router mounts on a memory, Kafka or RabbitMQ :class:`~framework.broker.server.BrokerServer`.

A router that is never mounted would drop its subscribers silently, so every router is
remembered (weakly) and the App warns at start about any one with subscribers that no broker
server mounts (:func:`warn_unmounted_routers`).
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from framework.broker.policy import BatchPolicy, RetryPolicy
from framework.broker.publisher import PublisherSpec
from framework.broker.signature import (
    UnresolvedAnnotationError,
    handler_name,
    inspect_handler,
    payload_type,
    remember_signature,
)
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import check_tags
from framework.middleware.core import Middleware

__all__ = ["Router", "mark_mounted", "unmounted_routers", "warn_unmounted_routers"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_log = logging.getLogger("pykratos.broker")
# Weak: a router dropped by its owner (a test's local one) is no longer reported.
_routers: weakref.WeakSet[Router] = weakref.WeakSet()
_mounted: weakref.WeakSet[Router] = weakref.WeakSet()
_warned: weakref.WeakSet[Router] = weakref.WeakSet()


def _retry_policy(retry: RetryPolicy | int) -> RetryPolicy:
    if isinstance(retry, RetryPolicy):
        return retry
    if isinstance(retry, int) and not isinstance(retry, bool):
        return RetryPolicy(max_attempts=retry)
    raise TypeError(f"retry must be a RetryPolicy or a max attempt count, got {retry!r}")


def _batch_policy(batch: BatchPolicy | int | None) -> BatchPolicy | None:
    if batch is None or isinstance(batch, BatchPolicy):
        return batch
    if isinstance(batch, int) and not isinstance(batch, bool):
        return BatchPolicy(max_size=batch)
    raise TypeError(f"batch must be None, a BatchPolicy or a max batch size, got {batch!r}")


class Router:
    """A group of subscribers, mountable on any broker server.

    Args:
        middlewares: applied to every subscriber of this router (and of routers included in
            it), inside the server's middleware and outside each subscriber's own.
    """

    def __init__(self, *, middlewares: Iterable[Middleware] = ()) -> None:
        self.middlewares: tuple[Middleware, ...] = tuple(middlewares)
        self._specs: list[SubscriberSpec] = []
        self._publishers: list[PublisherSpec] = []
        self._children: list[Router] = []
        #: The module that created this router: how the "mounted nowhere" warning names it.
        self.module: str = sys._getframe(1).f_globals.get("__name__", "?")
        _routers.add(self)

    @property
    def subscribers(self) -> list[SubscriberSpec]:
        """Every subscriber of this router and of the routers included in it, in order.

        Computed on access, so a subscriber added to an included router later still shows.
        """
        specs = list(self._specs)
        for child in self._children:
            specs.extend(child.subscribers)
        if not self.middlewares:
            return specs
        return [self._with_router_middlewares(spec) for spec in specs]

    @property
    def publishers(self) -> list[PublisherSpec]:
        """Every publisher declared on this router and on the routers included in it."""
        specs = list(self._publishers)
        for child in self._children:
            specs.extend(child.publishers)
        return specs

    def publisher(
        self, topic: str, payload_type: Any, *, description: str = "", name: str = ""
    ) -> PublisherSpec:
        """Declare that the service publishes ``payload_type`` messages to ``topic``.

        Only a declaration, for the AsyncAPI document (a ``send`` operation); publishing
        itself goes through a :class:`~framework.broker.publisher.Publisher`. Returns the
        recorded :class:`~framework.broker.publisher.PublisherSpec`.
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        spec = PublisherSpec(topic, payload_type, description, name)
        self._publishers.append(spec)
        return spec

    def _with_router_middlewares(self, spec: SubscriberSpec) -> SubscriberSpec:
        return replace(spec, middlewares=(*self.middlewares, *spec.middlewares))

    def include_router(self, other: Router) -> None:
        """Mount ``other``'s subscribers (present and future) on this router."""
        if other is self or self in other._descendants():
            raise ValueError("including this router would create a cycle")
        self._children.append(other)

    def _descendants(self) -> list[Router]:
        found: list[Router] = []
        for child in self._children:
            found.append(child)
            found.extend(child._descendants())
        return found

    def subscriber(
        self,
        topic: str,
        *,
        group: str | None = None,
        concurrency: int = 1,
        retry: RetryPolicy | int | None = None,
        dlq: str | None = None,
        batch: BatchPolicy | int | None = None,
        broadcast: bool = False,
        middlewares: Iterable[Middleware] = (),
        name: str = "",
        tags: Iterable[str] | None = None,
        **options: Any,
    ) -> Callable[[F], F]:
        """Register the decorated ``async`` function as a subscriber of ``topic``.

        Args:
            topic: Kafka topic, RabbitMQ routing key / queue, or memory topic.
            group: consumer group; every group gets every message, members of one group
                share them. ``None``: a group private to this handler.
            concurrency: concurrent workers; messages with the same key stay in order.
            retry: a :class:`RetryPolicy`, or a max attempt count (``retry=1``: no retry).
            dlq: dead-letter destination; ``None`` for ``<topic>.dlq``, ``""`` to disable.
            batch: a :class:`BatchPolicy` or a max batch size; the handler then takes
                ``list[Model]`` and the batch succeeds or fails as a whole.
            broadcast: every instance of the service gets every message (no group).
            middlewares: middleware for this subscriber only.
            name: readable name for logs (the handler's qualified name by default).
            tags: receive only messages published with one of these tags
                (``publish(..., tag=...)``); ``None``: every message, tagged or not. Each tag
                is 1-64 ASCII letters, digits, ``_`` or ``-`` (:mod:`framework.broker.tags`).
            **options: transport-specific knobs (``prefetch``, ``auto_offset_reset``, ...);
                a broker that does not support one refuses to subscribe.

        Returns the function itself, unchanged. Raises ``ValueError`` for a bad topic,
        concurrency or tag.
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic must be a non-empty string, got {topic!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if broadcast and group is not None:
            raise ValueError(
                f"subscriber on {topic!r}: broadcast=True gives every instance its own "
                f"subscription, so group={group!r} cannot apply"
            )
        tag_set = check_tags(tags)
        retry_policy = RetryPolicy() if retry is None else _retry_policy(retry)
        batch_policy = _batch_policy(batch)
        extra = tuple(middlewares)
        frozen_options: Mapping[str, Any] = dict(options)

        def decorator(fn: F) -> F:
            # Annotations naming classes local to the caller (common in tests) resolve only
            # while the caller's frame is alive, so resolve them now; a forward reference to a
            # class not defined yet is retried at subscribe time instead.
            try:
                signature = inspect_handler(fn, localns=sys._getframe(1).f_locals)
            except UnresolvedAnnotationError:
                pass
            else:
                # Fail at decoration, not at start, when the payload annotation cannot work.
                payload_type(signature, batch=batch_policy is not None, name=handler_name(fn))
                remember_signature(fn, signature)
            self._specs.append(
                SubscriberSpec(
                    topic=topic,
                    handler=fn,
                    group=group,
                    concurrency=concurrency,
                    retry=retry_policy,
                    dlq=dlq,
                    batch=batch_policy,
                    broadcast=broadcast,
                    options=frozen_options,
                    name=name,
                    middlewares=extra,
                    tags=tag_set,
                )
            )
            return fn

        return decorator


def mark_mounted(routers: Iterable[Router]) -> None:
    """Record that ``routers`` (and the routers included in them) are mounted on a broker
    server; :class:`~framework.broker.server.BrokerServer` calls it."""
    _mounted.update(routers)


def unmounted_routers() -> list[Router]:
    """Live routers with subscribers that no broker server mounts, outermost only (a router
    included in an unmounted one is reported through it)."""
    mounted: set[Router] = set()
    for router in list(_mounted):
        mounted.add(router)
        mounted.update(router._descendants())
    candidates = [r for r in list(_routers) if r not in mounted and r.subscribers]
    inner = {child for r in candidates for child in r._descendants()}
    return [r for r in candidates if r not in inner]


def warn_unmounted_routers() -> int:
    """Log a WARNING for each unmounted router (once per router), naming its module and its
    subscribers; return how many were reported now. The App calls it once its servers started.
    """
    reported = 0
    for router in unmounted_routers():
        if router in _warned:
            continue
        _warned.add(router)
        reported += 1
        subscribers = ", ".join(
            f"{spec.display_name} <- {spec.topic!r}" for spec in router.subscribers
        )
        _log.warning(
            "broker Router created in %s is mounted on no broker server: its subscribers "
            "receive nothing (%s); pass it to BrokerServer(routers=[...]) or to another "
            "router's include_router()",
            router.module,
            subscribers,
            extra={"router_module": router.module},
        )
    return reported
