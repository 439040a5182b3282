""":class:`BrokerConformance`: one test per promise of :data:`PROMISES`, for any broker.

Written once against the :class:`~framework.broker.Broker` contract, the
:class:`~framework.broker.Router` subscriber API, :class:`~framework.broker.BrokerServer`
and the processor's retry / dead-letter policy; a broker's test module subclasses it and
supplies a broker factory (see the package docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from pydantic import BaseModel

from framework.broker.message import Message
from framework.broker.policy import (
    DLQ_ATTEMPTS,
    DLQ_ERROR_TYPE,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    RetryPolicy,
)
from framework.broker.router import Router
from framework.broker.server import BrokerServer
from framework.testing.conformance.harness import BrokerFactory, Harness, Inbox
from framework.testing.conformance.promises import PROMISE_IDS

__all__ = ["NOT_UTF8", "BrokerConformance"]

#: A header value that is not UTF-8 (another producer wrote it); it must survive unchanged.
NOT_UTF8 = b"\xc3\x28"
#: Promises whose test still runs when declared not applicable: it then checks the refusal.
_CHECKED_WHEN_NOT_APPLICABLE = frozenset({"delay"})


class Order(BaseModel):
    """The typed payload of the decoding test."""

    id: int


def _header_text(raw: bytes) -> str:
    # How Message carries header bytes: UTF-8, non-UTF-8 bytes kept as surrogate escapes.
    return raw.decode("utf-8", "surrogateescape")


def _header_raw(message: Message, name: str) -> bytes | None:
    value = message.headers.get(name)
    return None if value is None else value.encode("utf-8", "surrogateescape")


class BrokerConformance:
    """Subclass per broker; the subclass is a pytest test class (name it ``Test...``).

    Class attributes:
        broker_name: the column title in the README table (``"kafka"``).
        expected_failures: promise id -> why this broker cannot keep it. The test runs as a
            strict xfail: if it starts passing, the suite fails until the entry is removed.
        not_applicable: promise id -> why the promise does not apply (e.g. no connection
            for an in-process broker); the test is skipped with that reason, except
            ``delay``, whose test then checks that ``publish(delay=...)`` raises
            ``NotImplementedError``.
        timeout: seconds any single wait may take (generous: CI machines are noisy).
        partitions: partitions :meth:`prepare_topic` is asked for where a test needs
            parallelism across members or workers.

    Fixture to supply: ``make_broker`` returning a :data:`BrokerFactory` (a new, unconnected
    broker on the same backend at each call: several of them must see the same topics and
    groups). Hooks to override where the broker needs them: :meth:`prepare_topic`,
    :meth:`drop_connections`, :meth:`crash`, :meth:`dead_letter_options`.
    """

    # Explicit, so the suite also runs under pytest-asyncio's strict mode.
    pytestmark = pytest.mark.asyncio

    broker_name: ClassVar[str] = ""
    expected_failures: ClassVar[Mapping[str, str]] = {}
    not_applicable: ClassVar[Mapping[str, str]] = {}
    timeout: ClassVar[float] = 30.0
    partitions: ClassVar[int] = 4

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attribute in ("expected_failures", "not_applicable"):
            unknown = set(getattr(cls, attribute)) - PROMISE_IDS
            if unknown:
                raise TypeError(
                    f"{cls.__name__}.{attribute} names unknown promises {sorted(unknown)}; "
                    f"valid: {sorted(PROMISE_IDS)}"
                )
        both = set(cls.expected_failures) & set(cls.not_applicable)
        if both:
            raise TypeError(f"{cls.__name__}: {sorted(both)} both expected to fail and n/a")

    # -- what a subclass supplies ------------------------------------------------------------

    @pytest.fixture
    def make_broker(self) -> BrokerFactory:
        """Override: return a factory of new, unconnected brokers under test."""
        raise NotImplementedError(f"{type(self).__name__} must define the make_broker fixture")

    async def prepare_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` partitions before anything uses it, where the
        broker needs that (Kafka); by default nothing (topics appear on first use)."""

    async def drop_connections(self) -> None:
        """Make the broker server close every client connection of this test (RabbitMQ:
        ``rabbitmqctl close_all_connections``; Kafka: a :class:`TcpProxy` in between).

        Raise ``NotImplementedError`` (the default) for a broker without connections; then
        declare ``reconnect`` in :attr:`not_applicable`.
        """
        raise NotImplementedError

    async def crash(self, server: BrokerServer) -> None:
        """End ``server`` as a crash would: in the middle of its handlers, acking nothing
        more. The default stops it with a zero timeout (handlers are cancelled, unfinished
        messages stay unacknowledged); a broker may cut its connection instead."""
        await server.stop(0)

    def dead_letter_options(self, dlq_topic: str) -> dict[str, Any]:
        """Subscriber options that make ``@router.subscriber(dlq_topic, ...)`` consume the
        dead letters of that destination (RabbitMQ: the ``<topic>.dlq`` queue on the
        dead-letter exchange); by default none (a subscriber on the topic gets them)."""
        return {}

    # -- plumbing ------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _declared_outcome(self, request: pytest.FixtureRequest) -> None:
        promise_id = request.function.__name__.removeprefix("test_")
        reason = self.not_applicable.get(promise_id)
        if reason is not None and promise_id not in _CHECKED_WHEN_NOT_APPLICABLE:
            pytest.skip(f"not applicable to {self.broker_name}: {reason}")
        reason = self.expected_failures.get(promise_id)
        if reason is not None:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))

    @pytest_asyncio.fixture
    async def harness(
        self, make_broker: BrokerFactory, request: pytest.FixtureRequest
    ) -> AsyncIterator[Harness]:
        label = request.function.__name__.removeprefix("test_").replace("_", "-")
        harness = Harness(make_broker, label, self.timeout)
        try:
            yield harness
        finally:
            await harness.aclose()

    async def _dead_letters(self, harness: Harness, topic: str) -> Inbox:
        """Subscribe to ``topic``'s dead letters; return the inbox they arrive in."""
        dlq = f"{topic}.dlq"
        await self.prepare_topic(dlq, 1)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(dlq, group=harness.group("dlq"), dlq="", **self.dead_letter_options(dlq))
        async def on_dead_letter(message: Message) -> None:
            inbox.add(message)

        await harness.serve(router, name="dlq-reader")
        return inbox

    # -- delivery ------------------------------------------------------------------------------

    async def test_group_split(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, self.partitions)
        seen: dict[str, list[bytes]] = {"a": [], "b": []}
        inbox = harness.inbox()

        def member(name: str) -> Router:
            router = Router()

            @router.subscriber(topic, group=group)
            async def handle(message: Message) -> None:
                seen[name].append(message.body)
                inbox.add(message.body)

            return router

        await harness.serve(member("a"), name="member-a")
        await harness.serve(member("b"), name="member-b")
        publisher = await harness.publisher()

        async def publish_round(prefix: str, count: int) -> set[bytes]:
            bodies = {f"{prefix}-{i}".encode() for i in range(count)}
            for body in sorted(bodies):
                await publisher.publish(topic, body, key=body)
            await inbox.until(lambda items: bodies <= set(items), f"all of {prefix}")
            return bodies

        # A group may still be settling right after its members subscribed (Kafka rebalances
        # when the second member joins): publish until both members are served.
        for attempt in range(20):
            await publish_round(f"warm{attempt}", 8)
            if seen["a"] and seen["b"]:
                break
        assert seen["a"] and seen["b"], f"one member got nothing: {seen}"

        settled = await publish_round("split", 40)
        counts = {
            name: [body for body in bodies if body in settled] for name, bodies in seen.items()
        }
        assert counts["a"] and counts["b"], f"the settled group did not split: {counts}"
        together = counts["a"] + counts["b"]
        assert sorted(together) == sorted(settled), "a message went to both members or none"

    async def test_groups_fan_out(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        got: dict[str, list[bytes]] = defaultdict(list)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group("billing"))
        async def billing(message: Message) -> None:
            got["billing"].append(message.body)
            inbox.add(message.body)

        @router.subscriber(topic, group=harness.group("shipping"))
        async def shipping(message: Message) -> None:
            got["shipping"].append(message.body)
            inbox.add(message.body)

        await harness.serve(router)
        publisher = await harness.publisher()
        bodies = [f"m-{i}".encode() for i in range(20)]
        for body in bodies:
            await publisher.publish(topic, body, key=body)
        await inbox.count(40, "40 deliveries (20 per group)")
        assert sorted(got["billing"]) == sorted(bodies)
        assert sorted(got["shipping"]) == sorted(bodies)

    async def test_broadcast(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        got: dict[str, list[bytes]] = defaultdict(list)
        inbox = harness.inbox()

        def instance(name: str) -> Router:
            router = Router()

            @router.subscriber(topic, broadcast=True)
            async def handle(message: Message) -> None:
                got[name].append(message.body)
                inbox.add(message.body)

            return router

        await harness.serve(instance("one"), name="instance-one")
        await harness.serve(instance("two"), name="instance-two")
        publisher = await harness.publisher()
        bodies = [f"b-{i}".encode() for i in range(10)]
        for body in bodies:
            await publisher.publish(topic, body, key=body)
        await inbox.count(20, "20 deliveries (10 per instance)")
        assert sorted(got["one"]) == sorted(bodies)
        assert sorted(got["two"]) == sorted(bodies)

    async def test_key_order(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, self.partitions)
        keys = [f"key-{i}" for i in range(6)]
        per_key = 20
        order: dict[str, list[int]] = defaultdict(list)
        gate = asyncio.Event()  # opens once everything is published: a backlog to share
        inbox = harness.inbox()
        in_flight = peak = 0
        jitter = random.Random(4)
        router = Router()

        @router.subscriber(topic, group=harness.group(), concurrency=4)
        async def handle(message: Message) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await gate.wait()
                await asyncio.sleep(jitter.random() * 0.003)  # handlers finish out of order
                key, seq = message.body.decode().split(":")
                order[key].append(int(seq))
            finally:
                in_flight -= 1
            inbox.add(message.body)

        await harness.serve(router)
        publisher = await harness.publisher()
        for seq in range(per_key):
            for key in keys:
                await publisher.publish(topic, f"{key}:{seq}".encode(), key=key.encode())
        gate.set()
        await inbox.count(len(keys) * per_key, "every message")
        assert peak > 1, "the handlers never overlapped: concurrency was not exercised"
        for key in keys:
            assert order[key] == list(range(per_key)), f"{key} out of order: {order[key]}"

    # -- failures ------------------------------------------------------------------------------

    async def test_retry_backoff(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        policy = RetryPolicy(max_attempts=3, backoff=0.3, multiplier=2.0)
        dead = await self._dead_letters(harness, topic)
        attempts: list[tuple[float, int]] = []
        loop = asyncio.get_running_loop()
        router = Router()

        @router.subscriber(topic, group=harness.group(), retry=policy)
        async def handle(message: Message) -> None:
            attempts.append((loop.time(), message.attempt))
            raise RuntimeError("always fails")

        await harness.serve(router)
        publisher = await harness.publisher()
        await publisher.publish(topic, b"retry me", key=b"k")
        await dead.count(1, "dead letter after the last attempt")
        assert [attempt for _, attempt in attempts] == [1, 2, 3]
        gaps = itertools.pairwise(attempts)
        # backoff * multiplier ** (attempt - 1): 0.3 s, then 0.6 s
        for ((before, _), (after, attempt)), wanted in zip(gaps, (0.3, 0.6), strict=True):
            waited = after - before
            assert waited >= wanted - 0.05, f"attempt {attempt} after {waited:.3f}s < {wanted}s"
            assert waited < wanted + self.timeout / 2, f"attempt {attempt} after {waited:.3f}s"
        assert dead.items[0].headers[DLQ_ATTEMPTS] == "3"

    async def test_dead_letter(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        dead = await self._dead_letters(harness, topic)
        router = Router()

        @router.subscriber(
            topic, group=harness.group(), retry=RetryPolicy(max_attempts=2, backoff=0.05)
        )
        async def handle(message: Message) -> None:
            raise ValueError("cannot pay 7")

        await harness.serve(router)
        publisher = await harness.publisher()
        body = b'{"id": 7}'
        await publisher.publish(topic, body, key=b"order-7", headers={"tenant": "t1"})
        [letter] = await dead.count(1, "dead letter")
        assert letter.body == body
        assert letter.key == b"order-7"
        assert letter.headers["tenant"] == "t1"
        assert letter.headers[DLQ_REASON] == "ValueError: cannot pay 7"
        assert letter.headers[DLQ_ERROR_TYPE] == "ValueError"
        assert letter.headers[DLQ_ORIGINAL_TOPIC] == topic
        assert letter.headers[DLQ_ATTEMPTS] == "2"

    async def test_undecodable(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        dead = await self._dead_letters(harness, topic)
        handled = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group(), retry=RetryPolicy(max_attempts=3))
        async def handle(order: Order) -> None:
            handled.add(order.id)

        await harness.serve(router)
        publisher = await harness.publisher()
        await publisher.publish(topic, b"{not json", key=b"k")
        await publisher.publish(topic, b'{"id": 1}', key=b"k")  # same key: after the bad one
        await handled.count(1, "the message after the undecodable one")
        [letter] = await dead.count(1, "dead letter")
        assert handled.items == [1]
        assert letter.body == b"{not json"
        assert letter.headers[DLQ_REASON].startswith("decode: "), letter.headers
        assert letter.headers[DLQ_ERROR_TYPE] == "DecodeError"
        assert letter.headers[DLQ_ATTEMPTS] == "1"

    # -- delivery guarantees across stops --------------------------------------------------------

    async def test_crashed_consumer(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, 1)
        bodies = [f"c-{i}".encode() for i in range(3)]
        taken = asyncio.Event()
        never = asyncio.Event()
        first = Router()

        @first.subscriber(topic, group=group)
        async def dies(message: Message) -> None:
            taken.set()
            await never.wait()  # in the middle of the work when the consumer dies

        crashing = await harness.serve(first, name="crashing")
        publisher = await harness.publisher()
        for body in bodies:
            await publisher.publish(topic, body, key=b"one-key")
        async with asyncio.timeout(self.timeout):
            await taken.wait()
        await self.crash(crashing)

        inbox = harness.inbox()
        second = Router()

        @second.subscriber(topic, group=group)
        async def survives(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(second, name="next")
        await inbox.until(lambda items: set(bodies) <= set(items), "the crashed consumer's work")

    async def test_graceful_stop(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, self.partitions)
        bodies = {f"s-{i}".encode() for i in range(12)}
        started: list[bytes] = []
        finished: list[bytes] = []
        first_started = asyncio.Event()
        first = Router()

        @first.subscriber(topic, group=group, concurrency=2)
        async def slow(message: Message) -> None:
            started.append(message.body)
            first_started.set()
            await asyncio.sleep(0.2)  # the work itself: takes time, must not be cut
            finished.append(message.body)

        stopping = await harness.serve(first, name="stopping")
        publisher = await harness.publisher()
        for body in sorted(bodies):
            await publisher.publish(topic, body, key=body)
        async with asyncio.timeout(self.timeout):
            await first_started.wait()
        await stopping.stop(self.timeout)
        assert sorted(started) == sorted(finished), "a handler was cut short by stop()"
        assert len(finished) == len(set(finished)), f"handled twice: {finished}"

        rest = bodies - set(finished)
        inbox = harness.inbox()
        second = Router()

        @second.subscriber(topic, group=group)
        async def takes_over(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(second, name="next")
        sentinel = b"sentinel"
        await publisher.publish(topic, sentinel, key=sentinel)
        await inbox.until(
            lambda items: (rest | {sentinel}) <= set(items), "the work the stopped one left"
        )
        again = set(inbox.items) & set(finished)
        assert not again, f"finished before the stop, delivered again after: {sorted(again)}"

    # -- publishing --------------------------------------------------------------------------------

    async def test_delay(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        publisher = await harness.publisher()
        if "delay" in self.not_applicable:
            with pytest.raises(NotImplementedError):
                await publisher.publish(topic, b"later", delay=1.0)
            return
        inbox = harness.inbox()
        loop = asyncio.get_running_loop()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add((message.body, loop.time()))

        await harness.serve(router)
        sent = loop.time()
        await publisher.publish(topic, b"later", delay=1.0)
        await publisher.publish(topic, b"now")
        await inbox.count(2, "the immediate and the delayed message")
        [(first, _), (second, arrived)] = inbox.items
        assert (first, second) == (b"now", b"later")
        assert arrived - sent >= 0.95, f"delivered {arrived - sent:.3f}s after publish"

    async def test_bytes_exact(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        dead = await self._dead_letters(harness, topic)
        body = bytes(range(256)) * 16
        raw_headers = {"x-text": "grüße ✓".encode(), "x-binary": NOT_UTF8, "x-empty": b""}
        delivered = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group(), retry=1)
        async def handle(message: Message) -> None:
            delivered.add(message)
            raise ValueError("to the dead-letter queue, as a faithful copy")

        await harness.serve(router)
        publisher = await harness.publisher()
        headers = {name: _header_text(raw) for name, raw in raw_headers.items()}
        await publisher.publish(topic, body, key=b"\x00\xffkey", headers=headers)
        [message] = await delivered.count(1, "the delivery")
        [letter] = await dead.count(1, "the dead letter")
        for where, got in (("handler", message), ("dead letter", letter)):
            assert got.body == body, f"{where}: body changed"
            for name, raw in raw_headers.items():
                assert _header_raw(got, name) == raw, f"{where}: header {name} changed"

    async def test_large_body(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        body = random.Random(7).randbytes(1_000_000)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(router)
        publisher = await harness.publisher()
        await publisher.publish(topic, body)
        [got] = await inbox.count(1, "the 1 MB message")
        assert len(got) == len(body)
        assert got == body

    async def test_publish_confirm(self, harness: Harness) -> None:
        topic, group = harness.topic(), harness.group()
        await self.prepare_topic(topic, self.partitions)
        router = Router()

        @router.subscriber(topic, group=group)
        async def declare(message: Message) -> None:
            raise AssertionError("nothing is published while the group is being declared")

        # The group exists before the publish (a RabbitMQ queue must be bound to get it).
        declaring = await harness.serve(router, name="declaring")
        await declaring.stop(self.timeout)

        publisher = await harness.publisher()
        bodies = [f"p-{i}".encode() for i in range(20)]
        for body in bodies:
            result = await publisher.publish(topic, body, key=body)
            assert result.topic == topic
        # Whatever the client had not sent yet would be lost now.
        with contextlib.suppress(NotImplementedError):  # in-process: nothing to lose
            await self.drop_connections()

        inbox = harness.inbox()
        second = Router()

        @second.subscriber(topic, group=group)
        async def consume(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(second, name="new-consumer")
        await inbox.until(lambda items: set(bodies) <= set(items), "every confirmed message")

    async def test_reconnect(self, harness: Harness) -> None:
        topic = harness.topic()
        await self.prepare_topic(topic, 1)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(topic, group=harness.group())
        async def handle(message: Message) -> None:
            inbox.add(message.body)

        await harness.serve(router)
        before = await harness.publisher("before")
        await before.publish(topic, b"before")
        await inbox.count(1, "the message before the drop")
        await self.drop_connections()
        # A fresh publisher: what is tested is the consumer's recovery, not the publisher's.
        after = await harness.publisher("after")
        await after.publish(topic, b"after")
        await inbox.until(lambda items: b"after" in items, "the message after the drop")


def _check_one_test_per_promise(cls: type[BrokerConformance]) -> None:
    tests = {name.removeprefix("test_") for name in vars(cls) if name.startswith("test_")}
    if tests != PROMISE_IDS:
        raise AssertionError(
            f"tests and promises differ: no test for {sorted(PROMISE_IDS - tests)}, "
            f"no promise for {sorted(tests - PROMISE_IDS)}"
        )


_check_one_test_per_promise(BrokerConformance)
