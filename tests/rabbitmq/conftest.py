"""Fixtures for the RabbitMQ tests (a real RabbitMQ: ``PYKRATOS_TEST_AMQP_URL``, see
tests/services.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.rabbitmq.helpers import URL, RabbitEnv, rabbitmqctl
from tests.services import amqp_url, require_url

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def rabbit_url() -> str:
    require_url(URL, "RabbitMQ")
    return URL


@pytest.fixture
async def env(rabbit_url: str) -> AsyncIterator[RabbitEnv]:
    environment = RabbitEnv(rabbit_url)
    try:
        yield environment
    finally:
        await environment.aclose()


@pytest.fixture
def vhost_url(rabbit_url: str) -> Iterator[tuple[str, str]]:
    """A private virtual host (so ``close_all_connections -p`` touches only this test's
    connections), deleted afterwards with everything in it."""
    vhost = f"pykratos-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost, amqp_url(vhost)
    finally:
        rabbitmqctl("delete_vhost", vhost)
