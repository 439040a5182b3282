"""The base of every promise group: what a broker declares, its hooks, the fixtures.

The tests themselves live in one class per promise group (:mod:`.delivery`,
:mod:`.failures`, :mod:`.stopping`, :mod:`.publishing`), combined by
:class:`~framework.testing.conformance.BrokerConformance`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from pydantic import BaseModel

from framework.broker.message import Message
from framework.broker.router import Router
from framework.broker.server import BrokerServer
from framework.testing.conformance.harness import BrokerFactory, Harness, Inbox
from framework.testing.conformance.promises import PROMISE_IDS

__all__ = ["NOT_UTF8", "ConformanceBase", "Order", "header_raw", "header_text"]

#: A header value that is not UTF-8 (another producer wrote it); it must survive unchanged.
NOT_UTF8 = b"\xc3\x28"
#: Promises whose test still runs when declared not applicable: it then checks the refusal.
_CHECKED_WHEN_NOT_APPLICABLE = frozenset(
    {"delay", "deliver_at", "delay_outlives_publisher", "key_partition"}
)


class Order(BaseModel):
    """The typed payload of the decoding test."""

    id: int


def header_text(raw: bytes) -> str:
    # How Message carries header bytes: UTF-8, non-UTF-8 bytes kept as surrogate escapes.
    return raw.decode("utf-8", "surrogateescape")


def header_raw(message: Message, name: str) -> bytes | None:
    value = message.headers.get(name)
    return None if value is None else value.encode("utf-8", "surrogateescape")


class ConformanceBase:
    """What every promise group shares: declarations, hooks, fixtures (see BrokerConformance).

    Subclass :class:`~framework.testing.conformance.BrokerConformance` per broker (a pytest
    test class: name it ``Test...``), or one promise group alone to run only its tests.

    Class attributes:
        broker_name: the column title in the README table (``"kafka"``).
        expected_failures: promise id -> why this broker cannot keep it. The test runs as a
            strict xfail: if it starts passing, the suite fails until the entry is removed.
        not_applicable: promise id -> why the promise does not apply (e.g. no connection
            for an in-process broker); the test is skipped with that reason, except
            ``delay``, ``deliver_at``, ``delay_outlives_publisher`` and ``key_partition``,
            whose tests then check that the publish raises ``NotImplementedError``.
        emulated: promise id -> how the framework keeps a promise the broker has no feature
            for (e.g. tags filtered by the processor, not the server). The test runs as
            usual; the README table says ``emulated`` with that note instead of ``pass``.
        timeout: seconds any single wait may take (generous: CI machines are noisy).
        partitions: partitions :meth:`prepare_topic` is asked for where a test needs
            parallelism across members or workers.

    Fixture to supply: ``make_broker`` returning a :data:`BrokerFactory` (a new, unconnected
    broker on the same backend at each call: several of them must see the same topics and
    groups). Hooks to override where the broker needs them: :meth:`prepare_topic`,
    :meth:`drop_connections`, :meth:`crash`, :meth:`dead_letter_topic`,
    :meth:`dead_letter_options`.
    """

    # Explicit, so the suite also runs under pytest-asyncio's strict mode.
    pytestmark = pytest.mark.asyncio

    broker_name: ClassVar[str] = ""
    expected_failures: ClassVar[Mapping[str, str]] = {}
    not_applicable: ClassVar[Mapping[str, str]] = {}
    emulated: ClassVar[Mapping[str, str]] = {}
    timeout: ClassVar[float] = 30.0
    partitions: ClassVar[int] = 4

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attribute in ("expected_failures", "not_applicable", "emulated"):
            unknown = set(getattr(cls, attribute)) - PROMISE_IDS
            if unknown:
                raise TypeError(
                    f"{cls.__name__}.{attribute} names unknown promises {sorted(unknown)}; "
                    f"valid: {sorted(PROMISE_IDS)}"
                )
        both = set(cls.expected_failures) & set(cls.not_applicable)
        if both:
            raise TypeError(f"{cls.__name__}: {sorted(both)} both expected to fail and n/a")
        kept = set(cls.emulated) & (set(cls.expected_failures) | set(cls.not_applicable))
        if kept:
            raise TypeError(f"{cls.__name__}: {sorted(kept)} emulated, yet failing or n/a")

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

        On a server that other tests or services share, drop only this test's connections:
        a private virtual host, or a :class:`~framework.testing.conformance.TcpProxy` in front
        of the server (works for any TCP protocol). Raise ``NotImplementedError`` (the
        default) for a broker without connections; then declare ``reconnect`` in
        :attr:`not_applicable`.
        """
        raise NotImplementedError

    async def crash(self, server: BrokerServer) -> None:
        """End ``server`` as a crash would: in the middle of its handlers, acking nothing
        more. The default stops it with a zero timeout (handlers are cancelled, unfinished
        messages stay unacknowledged); a broker may cut its connection instead."""
        await server.stop(0)

    def dead_letter_topic(self, topic: str) -> str:
        """Where the broker sends the dead letters of ``topic`` by default: ``<topic>.dlq``
        (Kafka, RabbitMQ, NATS, memory); a broker with another convention overrides it
        (MQTT: ``<topic>/dlq``, a level of the topic tree)."""
        return f"{topic}.dlq"

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
        dlq = self.dead_letter_topic(topic)
        await self.prepare_topic(dlq, 1)
        inbox = harness.inbox()
        router = Router()

        @router.subscriber(dlq, group=harness.group("dlq"), dlq="", **self.dead_letter_options(dlq))
        async def on_dead_letter(message: Message) -> None:
            inbox.add(message)

        await harness.serve(router, name="dlq-reader")
        return inbox
