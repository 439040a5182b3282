"""The broker conformance suite on the in-process memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import ClassVar

import pytest

from framework.broker import MemoryBroker
from framework.testing.conformance import BrokerConformance, BrokerFactory, MemoryBrokerView


class TestMemory(BrokerConformance):
    broker_name = "memory"
    emulated: ClassVar[Mapping[str, str]] = {
        "tags": "the in-process broker has no server to filter on: the processor acknowledges, "
        "unhandled, a message whose x-tag the subscriber did not ask for",
    }
    not_applicable: ClassVar[Mapping[str, str]] = {
        "reconnect": "in-process: there is no connection a server could drop",
    }

    @pytest.fixture
    async def make_broker(self) -> AsyncIterator[BrokerFactory]:
        # One shared log per test; each "process" of the test gets its own view on it.
        shared = MemoryBroker(partitions=self.partitions, name="conformance")
        yield lambda name: MemoryBrokerView(shared, name)
        await shared.close()
