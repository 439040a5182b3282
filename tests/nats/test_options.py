"""NATS options: config-time validation, subscriber options, streams the broker may not make."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from framework.broker import BrokerServer, Router
from framework.broker.factory import create_broker
from framework.broker.options import UnsupportedOptionError
from framework.broker.options_schema import validate_broker_options
from framework.transport.nats import NatsBroker, StreamError
from framework.transport.nats.options import consumer_name
from framework.transport.nats.subjects import covers
from tests.nats.helpers import NatsEnv, delete_stream

pytestmark = pytest.mark.nats


def test_options_are_validated_and_typed_at_config_time() -> None:
    typed = validate_broker_options("nats", {"prefetch": "64", "create_streams": "false"})
    assert typed == {"prefetch": 64, "create_streams": False}
    with pytest.raises(ValidationError, match="prefech"):
        validate_broker_options("nats", {"prefech": 1})
    with pytest.raises(ValidationError, match="storage"):
        validate_broker_options("nats", {"storage": "disk"})
    with pytest.raises((ValidationError, ValueError), match="prefetch"):
        validate_broker_options("nats", {"prefetch": 0})


def test_create_broker_builds_a_nats_broker() -> None:
    broker = create_broker("nats", servers="nats://u:secret@nats.internal:4222", stream="s")
    assert isinstance(broker, NatsBroker)
    assert broker.kind == "nats" and broker.stream == "s"
    assert "secret" not in broker.endpoint


def test_consumer_names_and_subject_coverage() -> None:
    assert consumer_name("grp_orders") == "grp_orders"
    dotted = consumer_name("app.handlers.<locals>.on_pay_orders.*")
    assert all(c not in dotted for c in ".*> ") and dotted != consumer_name("app_handlers")
    assert covers("orders.>", "orders.a.b") and covers("orders.*", "orders.a")
    assert not covers("orders.*", "orders.a.b") and not covers("orders.*", "orders.>")
    assert not covers("orders.>", "orders") and covers("a.b", "a.b")


async def test_an_unknown_subscriber_option_fails_before_connecting() -> None:
    router = Router()

    @router.subscriber("x", group="g", exchange="nope")
    async def handle(body: bytes) -> None: ...

    server = BrokerServer(NatsBroker("nats://127.0.0.1:1"), [router])
    with pytest.raises(UnsupportedOptionError, match="exchange"):
        await server.start()
    await server.stop(1)


async def test_without_create_streams_a_missing_stream_is_an_error(env: NatsEnv) -> None:
    topic = env.topic("absent")
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(body: bytes) -> None: ...

    broker = await env.connected(create_streams=False)
    with pytest.raises(StreamError, match="no JetStream stream captures"):
        await broker.publish(topic, b"x")
    with pytest.raises(StreamError, match="no JetStream stream captures"):
        await env.serve(router, broker=env.broker(create_streams=False))


async def test_a_stream_made_by_the_operator_is_used_as_it_is(env: NatsEnv) -> None:
    topic = env.topic("ops")
    name = f"ops_{env.tag}"
    broker = await env.connected(create_streams=False)
    await broker.jetstream.add_stream(name=name, subjects=[f"{topic}.>"])
    try:
        sent = await broker.publish(f"{topic}.a", b"x")
        assert sent.offset == 1
        info = await broker.jetstream.stream_info(name)
        assert info.state.messages == 1
    finally:
        await delete_stream(name)


async def test_dead_letters_that_would_land_in_their_own_topic_are_refused(
    env: NatsEnv,
) -> None:
    router = Router()

    @router.subscriber(env.topic("all") + ".>", group="g")
    async def handle(body: bytes) -> None: ...

    with pytest.raises(StreamError, match="give a dlq= subject outside it"):
        await env.serve(router)


