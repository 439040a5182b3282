"""The test broker: every broker of an App on the memory broker's semantics, recorded.

:class:`TestBroker` patches the *broker objects* the App already holds (the ones its
:class:`~framework.broker.server.BrokerServer` s consume from and its publishers publish
through), so neither the service's code nor its config changes: a Kafka or RabbitMQ broker
built from config is redirected, for the duration of the test, to a private
:class:`~framework.broker.memory.MemoryBroker` (groups, per-key order, retries, broadcast, DLQ).
This is the approach of FastStream's ``TestBroker`` (patch the broker, keep the handlers),
applied to every broker that a ``BrokerServer`` mounts, whatever its kind.

It records what was published (topic, key, headers, body) and what each subscriber received
and how it ended, and lets a test wait for "this subscriber handled N messages" on an event,
never a sleep. A handler that fails is not dead-lettered silently: its exception is kept and
raised by the next wait, or when the test broker is closed (``dead_letter=True`` puts real
dead-lettering back: the failed message goes to ``<topic>.dlq`` as on a real broker).

With ``real=True`` the brokers are left as they are (the real Kafka, RabbitMQ, ...) and only
the recording and the error surfacing are added: the same test runs against the real brokers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from framework.broker.broker import (
    Broker,
    MessageProcessor,
    Outcome,
    ProcessResult,
    PublishResult,
    Subscription,
)
from framework.broker.codec import Codec, JsonCodec
from framework.broker.memory import MemoryBroker
from framework.broker.message import Message
from framework.broker.publisher import Publisher
from framework.broker.server import BrokerServer
from framework.broker.subscriber import SubscriberSpec
from framework.broker.tags import tag_matches, tag_of, tagged_headers
from framework.middleware.core import Handler

__all__ = ["HandlerFailed", "Published", "Received", "SubscriberLike", "TestBroker"]

#: What names a subscriber in :meth:`TestBroker.handled`: its handler function, its display
#: name (``name=`` or the handler's qualified name) or its topic (when only one subscribes).
SubscriberLike = Callable[..., Any] | str

_PATCHED = ("connect", "close", "publish", "subscribe", "batch_publisher", "prepare_publish")


class HandlerFailed(AssertionError):
    """A subscriber's handler failed in a test (after its retries); ``__cause__`` is the
    handler's exception when it raised one (``None`` for an undecodable message)."""

    def __init__(self, subscriber: str, message: Message, reason: str) -> None:
        super().__init__(f"{subscriber} failed on a message from {message.topic!r}: {reason}")
        self.subscriber = subscriber
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Published:
    """One publish seen by the test broker (handlers' and dead letters' included)."""

    topic: str
    body: bytes
    key: bytes | None
    headers: dict[str, str]

    def decode(self, type_: Any = Any, codec: Codec | None = None) -> Any:
        """The body decoded as ``type_`` (JSON by default)."""
        return (codec or JsonCodec()).decode(self.body, type_)

    @property
    def tag(self) -> str | None:
        """The message's tag (``publish(..., tag=...)``), or ``None``."""
        return tag_of(self.headers)


@dataclass(slots=True)
class Received:
    """One message a subscriber processed: the message, its decoded payload (``None`` if it
    could not be decoded) and the outcome (``ACK`` or ``DEAD``)."""

    message: Message
    payload: Any = None
    outcome: Outcome | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class _Record:
    spec: SubscriberSpec
    received: list[Received] = field(default_factory=list)


class _RecordingProcessor:
    """Wraps the server's processor: records each message, keeps failures for the test."""

    def __init__(self, owner: TestBroker, inner: MessageProcessor, record: _Record) -> None:
        self.spec = inner.spec
        self._owner = owner
        self._inner = inner
        self._record = record

    async def process(self, message: Message, *, retry_in_process: bool = True) -> ProcessResult:
        if not tag_matches(self.spec.tags, message):
            # Filtered out by tag: the subscriber never saw it, so it is not recorded.
            return await self._inner.process(message, retry_in_process=retry_in_process)
        entry = Received(message)
        result = await self._owner._run(entry, lambda: self._inner.process(
            message, retry_in_process=retry_in_process))
        return self._owner._finish(self._record, [entry], result)

    async def process_batch(self, messages: Sequence[Message]) -> ProcessResult:
        if self.spec.tags and not any(tag_matches(self.spec.tags, m) for m in messages):
            return await self._inner.process_batch(messages)  # all filtered out by tag
        entries = [Received(m) for m in messages if tag_matches(self.spec.tags, m)]
        result = await self._owner._run(entries[0], lambda: self._inner.process_batch(messages))
        if isinstance(entries[0].payload, list):
            for entry, payload in zip(entries, entries[0].payload, strict=False):
                entry.payload = payload
        return self._owner._finish(self._record, entries, result)


class TestBroker:
    """Redirect (or watch) every broker of ``servers``; use as ``async with``, or call
    :meth:`install` before the App starts and :meth:`uninstall` after it stopped.

    Args:
        servers: the broker servers to take over (e.g. ``[s for s in app.servers if
            isinstance(s, BrokerServer)]``; :class:`framework.testing.TestApp` does this).
        real: keep the real brokers; only record and surface errors.
        dead_letter: dead-letter failed messages as the broker would, instead of raising the
            handler's error in the test.
        partitions: partitions per topic of the memory brokers.

    Raises :class:`HandlerFailed` from :meth:`handled` and :meth:`check` (and so from the
    ``async with`` exit) when a handler failed and ``dead_letter`` is off.
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        servers: Iterable[BrokerServer],
        *,
        real: bool = False,
        dead_letter: bool = False,
        partitions: int = 4,
    ) -> None:
        self.servers = list(servers)
        self.real = real
        self.dead_letter = dead_letter
        self.partitions = partitions
        #: Every publish, in order.
        self.published: list[Published] = []
        self._records: list[_Record] = []
        self._failures: list[HandlerFailed] = []
        self._changed = asyncio.Event()
        self._current: dict[asyncio.Task[Any], Received] = {}
        self._patched: list[Broker] = []
        self._memories: dict[int, MemoryBroker] = {}
        self._server_middlewares: list[tuple[BrokerServer, Any]] = []

    # -- installing ------------------------------------------------------------------------

    def install(self) -> None:
        """Patch the brokers and the servers' middleware; idempotent per broker."""
        for server in self.servers:
            self._server_middlewares.append((server, server.middlewares))
            server.middlewares = (self._capture, *server.middlewares)
            if any(b is server.broker for b in self._patched):
                continue
            self._patch(server.broker)

    def uninstall(self) -> None:
        """Undo :meth:`install` (the brokers' own methods are back)."""
        for broker in self._patched:
            for name in _PATCHED:
                vars(broker).pop(name, None)
        self._patched.clear()
        for server, middlewares in self._server_middlewares:
            server.middlewares = middlewares
        self._server_middlewares.clear()

    async def __aenter__(self) -> TestBroker:
        self.install()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.uninstall()
        if exc_type is None:
            self.check()

    def _patch(self, broker: Broker) -> None:
        memory_broker: MemoryBroker | None = None
        if self.real:
            target: Broker = broker
        else:
            target = memory_broker = self._memories.setdefault(
                id(broker), MemoryBroker(partitions=self.partitions, name=f"test-{broker.kind}")
            )
        # Bound methods of the target, fetched before patching (the real broker's own methods
        # when ``real``); instance attributes shadow the class's methods for every caller
        # holding this broker object: its BrokerServer and its publishers alike.
        connect, close = target.connect, target.close
        publish, subscribe = target.publish, target.subscribe

        async def recorded_publish(
            topic: str,
            body: bytes,
            *,
            key: bytes | None = None,
            headers: Any = None,
            delay: float | None = None,
            deliver_at: datetime | None = None,
            partition: int | None = None,
            tag: str | None = None,
        ) -> PublishResult:
            sent = tagged_headers(headers, tag)  # also refuses a bad tag before recording it
            self.published.append(Published(topic, body, key, dict(sent or {})))
            return await publish(
                topic,
                body,
                key=key,
                headers=headers,
                delay=delay,
                deliver_at=deliver_at,
                partition=partition,
                tag=tag,
            )

        async def recorded_subscribe(
            spec: SubscriberSpec, processor: MessageProcessor
        ) -> Subscription:
            record = _Record(spec)
            self._records.append(record)
            if memory_broker is not None:
                # The service's options were checked against its real broker by the server;
                # the memory broker only understands its own.
                known = memory_broker.supported_options
                kept = {k: v for k, v in spec.options.items() if k in known}
                spec = replace(spec, options=kept)
            return await subscribe(spec, _RecordingProcessor(self, processor, record))

        vars(broker).update(
            connect=connect,
            close=close,
            publish=recorded_publish,
            subscribe=recorded_subscribe,
            # A batching publisher pipelines the (recorded) publish whatever the broker's
            # native path: a Kafka or Redis one would need the real connection.
            batch_publisher=partial(Broker.batch_publisher, broker),
            prepare_publish=target.prepare_publish,
        )
        if memory_broker is not None:
            # Dead letters go through the memory broker's own publish: record them too.
            vars(target)["publish"] = recorded_publish
        self._patched.append(broker)

    # -- recording -------------------------------------------------------------------------

    def _capture(self, handler: Handler) -> Handler:
        """Outermost middleware: keeps the decoded payload and the handler's exception."""

        async def run(payload: Any) -> Any:
            task = asyncio.current_task()
            entry = self._current.get(task) if task is not None else None
            if entry is not None:
                entry.payload = payload
            try:
                return await handler(payload)
            except Exception as exc:
                if entry is not None:
                    entry.error = exc
                raise

        return run

    async def _run(self, entry: Received, call: Callable[[], Any]) -> ProcessResult:
        task = asyncio.current_task()
        if task is not None:
            self._current[task] = entry
        try:
            result: ProcessResult = await call()
        finally:
            if task is not None:
                self._current.pop(task, None)
        return result

    def _finish(
        self, record: _Record, entries: list[Received], result: ProcessResult
    ) -> ProcessResult:
        for entry in entries:
            entry.outcome = result.outcome
        record.received.extend(entries)
        if result.outcome is Outcome.DEAD and not self.dead_letter:
            failure = HandlerFailed(record.spec.display_name, entries[0].message, result.reason)
            failure.__cause__ = entries[0].error
            self._failures.append(failure)
            result = ProcessResult(Outcome.ACK, result.attempts)  # kept for the test, not a DLQ
        self._notify()
        return result

    def _notify(self) -> None:
        # Wake every waiter; each re-checks its own condition on a fresh event.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- what tests read -------------------------------------------------------------------

    def _find(self, subscriber: SubscriberLike) -> list[_Record]:
        if callable(subscriber):
            found = [r for r in self._records if r.spec.handler is subscriber]
        else:
            found = [r for r in self._records if r.spec.display_name == subscriber]
            found = found or [r for r in self._records if r.spec.topic == subscriber]
        if not found:
            known = ", ".join(f"{r.spec.display_name} <- {r.spec.topic}" for r in self._records)
            raise LookupError(f"no subscriber {subscriber!r} is running; running: {known}")
        return found

    def received(self, subscriber: SubscriberLike) -> list[Received]:
        """What ``subscriber`` processed so far, in order of completion."""
        return [entry for record in self._find(subscriber) for entry in record.received]

    def payloads(self, subscriber: SubscriberLike) -> list[Any]:
        """The decoded payloads ``subscriber`` processed so far."""
        return [entry.payload for entry in self.received(subscriber)]

    def published_to(self, topic: str) -> list[Published]:
        """Every publish to ``topic``, in order."""
        return [p for p in self.published if p.topic == topic]

    async def handled(
        self, subscriber: SubscriberLike, count: int = 1, *, timeout: float = 5.0
    ) -> list[Received]:
        """Wait until ``subscriber`` processed at least ``count`` messages; return them.

        Raises :class:`HandlerFailed` as soon as any handler failed (dead-lettering off),
        ``TimeoutError`` after ``timeout`` seconds, naming what was handled by then.
        """
        self._find(subscriber)
        try:
            async with asyncio.timeout(timeout):
                while not self._failures and len(self.received(subscriber)) < count:
                    await self._changed.wait()
        except TimeoutError:
            done = len(self.received(subscriber))
            raise TimeoutError(
                f"{subscriber!r} handled {done} of {count} message(s) in {timeout:.1f}s"
            ) from None
        self.check()
        return self.received(subscriber)

    @property
    def failures(self) -> list[HandlerFailed]:
        """Handler failures not raised yet (:meth:`take_failures` to expect them)."""
        return list(self._failures)

    def take_failures(self) -> list[HandlerFailed]:
        """Return and forget the failures so far: for a test that expects a handler to fail."""
        failures, self._failures = self._failures, []
        return failures

    def check(self) -> None:
        """Raise the first handler failure not taken yet (:class:`HandlerFailed`)."""
        if self._failures:
            first = self._failures[0]
            self._failures = []
            raise first

    def publisher(self, server: str | None = None, codec: Codec | None = None) -> Publisher:
        """A :class:`Publisher` on the broker of the server named ``server`` (the first
        broker server by default), encoding with ``codec`` (JSON by default)."""
        for candidate in self.servers:
            if server is None or candidate.name == server:
                return Publisher(candidate.broker, codec)
        names = [s.name for s in self.servers]
        raise LookupError(f"no broker server named {server!r}; there are {names}")
