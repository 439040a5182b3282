"""Redis broker options: checked when the config is scanned, and subscriber options."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from framework.broker import Router, UnsupportedOptionError, create_broker
from framework.broker.errors import BROKER_UNAVAILABLE
from framework.broker.options_schema import validate_broker_options
from framework.transport.redis import PublishTimeoutError, RedisBroker, RedisOptions
from framework.transport.redis.publishing import StreamPublisher, trim_arguments
from tests.redis.helpers import RedisEnv
from tests.services import free_port, redis_url

from app_template.conf.conf import BrokerConf


def test_create_broker_and_the_service_config_know_redis() -> None:
    broker = create_broker("redis", url="redis://:secret@cache:6380/2", key_prefix="svc:")
    assert isinstance(broker, RedisBroker)
    assert broker.endpoint == "redis://:***@cache:6380/2"
    assert broker.stream("orders") == "svc:orders"
    conf = BrokerConf(kind="redis", options={"block_ms": "250", "maxlen": "1000"})
    assert conf.options == {"block_ms": 250, "maxlen": 1000}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"blok_ms": 1}, "did you mean 'block_ms'"),
        ({"start_id": "latest"}, "start_id must be '0'"),
        ({"maxlen": 10, "minid_age": 60}, "exclusive"),
        ({"block_ms": 20_000}, "below socket_timeout"),
        ({"claim_idle_ms": 1000, "claim_interval": 5}, "well below claim_idle_ms"),
        ({"prefetch": 0}, "prefetch must be an int >= 1"),
    ],
)
def test_bad_options_fail_when_the_config_is_scanned(options: dict, message: str) -> None:
    with pytest.raises((ValidationError, ValueError), match=message):
        BrokerConf(kind="redis", options=options)
    with pytest.raises((ValidationError, ValueError), match=message):
        validate_broker_options("redis", options)


def test_trim_arguments_follow_the_call_then_the_broker() -> None:
    assert trim_arguments(RedisOptions()) == {}
    assert trim_arguments(RedisOptions(maxlen=100)) == {"maxlen": 100, "approximate": True}
    assert trim_arguments(RedisOptions(maxlen=100), maxlen=5) == {"maxlen": 5, "approximate": True}
    by_age = trim_arguments(RedisOptions(maxlen=100, approximate_trim=False), minid_age=60)
    assert set(by_age) == {"minid", "approximate"} and by_age["approximate"] is False


@pytest.mark.redis
async def test_unknown_or_invalid_subscriber_options_are_refused(env: RedisEnv) -> None:
    for options, message in (
        ({"prefetch_count": 5}, "prefetch_count not supported by the redis broker"),
        ({"start_id": "soon"}, "start_id must be"),
        ({"prefetch": 2, "concurrency": 3}, "exceeds the prefetch"),
    ):
        router = Router()
        concurrency = options.pop("concurrency", 1)

        @router.subscriber("t", group="g", concurrency=concurrency, **options)
        async def handle(body: bytes) -> None: ...

        with pytest.raises(UnsupportedOptionError, match=message):
            await env.serve(router)


async def test_a_publish_redis_does_not_answer_is_a_503_after_publish_timeout() -> None:
    parts = urlsplit(redis_url())  # the test Redis' host, on a port nothing listens on
    silent = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{free_port()}"))
    nobody = Redis.from_url(silent, retry=Retry(NoBackoff(), 0))
    publisher = StreamPublisher(nobody, RedisOptions(publish_timeout=0.3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PublishTimeoutError) as caught:
        await publisher.xadd("orders", {b"body": b"{}"})
    assert 0.3 <= loop.time() - started < 3
    assert caught.value.code == 503 and caught.value.reason == BROKER_UNAVAILABLE
    assert caught.value.metadata["broker"] == "redis"
    await nobody.aclose()
