"""The broker conformance suite on NATS JetStream (the machine's ``nats-server -js``).

Each test's brokers keep their subjects in a stream of their own (deleted after), so tests
never see each other's messages nor those of other suites on the same server. Clients reach
the server through a :class:`TcpProxy`, so ``drop_connections`` cuts only this module's
connections: the shared server is never restarted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

from framework.testing.conformance import BrokerConformance, BrokerFactory, TcpProxy
from tests.nats.helpers import delete_stream, make_broker, stream_name
from tests.services import nats_url, proxied_url, require_url

pytestmark = pytest.mark.nats


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    """A proxy in front of the NATS server; yields it (clients connect to its port)."""
    url = nats_url()
    require_url(url, "NATS")
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 4222).start()
    try:
        yield proxy
    finally:
        proxy.stop()


class TestNats(BrokerConformance):
    broker_name = "nats"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "key_partition": "a JetStream stream has no partitions (a key orders its messages "
        "within a group); publish(partition=) raises NotImplementedError",
    }
    emulated: ClassVar[Mapping[str, str]] = {
        "delay": "JetStream (NATS 2.9) has no scheduled delivery: a delay stream and a "
        "framework relay (held within 5 s of due, nak-ed with the remaining time before)",
        "deliver_at": "as delay (the relay publishes at the due time)",
        "delay_outlives_publisher": "the message waits in the delay stream until a relay runs",
        "tags": "a NATS 2.9 consumer has a single filter subject, so a subscriber without tags "
        "could not take both `<subject>` and `<subject>.<tag>` (filter_subjects came in "
        "2.10): the tag travels in the x-tag header and the processor acks, unhandled, a "
        "message the subscriber did not ask for",
    }

    @pytest.fixture
    async def make_broker(self, proxy: TcpProxy) -> AsyncIterator[BrokerFactory]:
        self.proxy = proxy
        prefix = f"conf-{uuid.uuid4().hex[:10]}"
        url = proxied_url(nats_url(), proxy.port)
        # A crashed consumer's messages come back after ack_wait: JetStream's default 30 s
        # equals the suite's wait, so crashed_consumer raced its own timeout.
        yield lambda name: make_broker(prefix, url, name=name, ack_wait=5.0)
        await delete_stream(stream_name(prefix))
        await delete_stream(f"{stream_name(prefix)}-delay")

    async def drop_connections(self) -> None:
        dropped = await asyncio.to_thread(self.proxy.drop)
        assert dropped, "no client connection went through the proxy: nothing was dropped"
