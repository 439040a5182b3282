"""Fixtures for the Redis tests (a real, shared Redis: ``PYKRATOS_TEST_REDIS_URL``, see
tests/services.py). Each test works under its own key prefix, deleted afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.redis.helpers import RedisEnv
from tests.services import redis_url, require_url

pytestmark = pytest.mark.redis


@pytest.fixture
async def env() -> AsyncIterator[RedisEnv]:
    require_url(redis_url(), "Redis")
    environment = RedisEnv(redis_url())
    try:
        yield environment
    finally:
        await environment.aclose()
