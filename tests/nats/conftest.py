"""Fixtures for the NATS tests (a real NATS with JetStream: ``PYKRATOS_TEST_NATS_URL``, see
tests/services.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.nats.helpers import URL, NatsEnv
from tests.services import require_url

pytestmark = pytest.mark.nats


@pytest.fixture
def nats_server_url() -> str:
    require_url(URL, "NATS")
    return URL


@pytest.fixture
async def env(nats_server_url: str) -> AsyncIterator[NatsEnv]:
    environment = NatsEnv(nats_server_url)
    try:
        yield environment
    finally:
        await environment.aclose()
