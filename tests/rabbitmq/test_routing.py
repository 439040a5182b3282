"""Routing on a real RabbitMQ: clustering vs broadcast, direct/topic/fanout, publishing."""

from __future__ import annotations

import asyncio
import time

import aio_pika
import pytest
from pydantic import BaseModel

from framework.broker import Message, Router, create_broker
from framework.transport.rabbitmq import (
    RabbitBroker,
    RabbitUnavailableError,
    TopologyError,
    UnroutableError,
)
from tests.rabbitmq.helpers import Collector, RabbitEnv

pytestmark = pytest.mark.rabbitmq


class Event(BaseModel):
    n: int


def body(n: int) -> bytes:
    return Event(n=n).model_dump_json().encode()


async def test_clustering_two_consumers_share_a_queue_each_message_once(env: RabbitEnv) -> None:
    topic = env.topic("orders")
    seen = Collector()
    by_instance: dict[str, list[int]] = {"a": [], "b": []}

    def member(name: str) -> Router:
        router = Router()

        @router.subscriber(topic, group="billing")
        async def handle(event: Event) -> None:
            by_instance[name].append(event.n)
            seen.add(event.n)

        return router

    await env.serve(member("a"))
    server_b = await env.serve(member("b"))
    assert isinstance(server_b.broker, RabbitBroker)
    assert server_b.broker.subscriptions[0].queue == f"billing.{topic}"
    publisher = await env.connected()
    for n in range(100):
        await publisher.publish(topic, body(n))
    await seen.wait(100)
    await asyncio.sleep(0.2)  # a duplicate would arrive now
    assert sorted(seen.items) == list(range(100))
    assert by_instance["a"] and by_instance["b"], "the broker round-robins between members"


async def test_broadcast_every_instance_gets_every_message(env: RabbitEnv) -> None:
    topic = env.topic("config")
    instances = [Collector(), Collector()]

    for collector in instances:
        router = Router()

        @router.subscriber(topic, broadcast=True)
        async def handle(event: Event, _c: Collector = collector) -> None:
            _c.add(event.n)

        await env.serve(router)
    publisher = await env.connected()
    for n in range(20):
        await publisher.publish(topic, body(n))
    for collector in instances:
        assert sorted(await collector.wait(20)) == list(range(20))


async def test_two_broadcast_subscribers_of_one_topic_in_one_process_get_every_message(
    env: RabbitEnv,
) -> None:
    # They shared the queue broadcast.<topic>.<instance id>: RabbitMQ split the messages
    # between them, and the tagged one acknowledged, unhandled, the other's share.
    topic = env.topic("shared")
    everything, tagged = Collector(), Collector()
    router = Router()

    @router.subscriber(topic, broadcast=True)
    async def every(event: Event) -> None:
        everything.add(event.n)

    @router.subscriber(topic, broadcast=True, tags={"a"})
    async def only_a(event: Event) -> None:
        tagged.add(event.n)

    await env.serve(router)
    publisher = await env.connected()
    for n in range(10):
        await publisher.publish(topic, body(n), tag="a" if n % 2 else "b")
    assert sorted(await everything.wait(10)) == list(range(10))
    assert sorted(await tagged.wait(5)) == [1, 3, 5, 7, 9]


async def test_direct_routing_matches_keys_exactly(env: RabbitEnv) -> None:
    exchange = f"direct.{env.tag}"
    got = Collector()
    router = Router()

    @router.subscriber(
        "ignored", group="g", exchange=exchange, exchange_type="direct", routing_key=["a", "b"]
    )
    async def handle(event: Event, message: Message) -> None:
        got.add((message.topic, event.n))

    await env.serve(router)
    publisher = await env.connected(mandatory=False)
    for n, key in enumerate(["a", "b", "c", "a.x"]):
        await publisher.publish(key, body(n), exchange=exchange)
    assert sorted(await got.wait(2)) == [("a", 0), ("b", 1)]
    await asyncio.sleep(0.2)
    assert len(got.items) == 2


async def test_topic_routing_with_wildcards(env: RabbitEnv) -> None:
    got = Collector()
    router = Router()

    @router.subscriber(f"orders.{env.tag}.*", group="g")
    async def handle(event: Event, message: Message) -> None:
        got.add(message.topic)

    await env.serve(router)
    publisher = await env.connected(mandatory=False)
    await publisher.publish(f"orders.{env.tag}.created", body(1))
    await publisher.publish(f"invoices.{env.tag}.created", body(2))
    await publisher.publish(f"orders.{env.tag}.paid", body(3))
    assert await got.wait(2) == [f"orders.{env.tag}.created", f"orders.{env.tag}.paid"]


async def test_fanout_delivers_to_every_bound_queue_whatever_the_key(env: RabbitEnv) -> None:
    exchange = f"fan.{env.tag}"
    groups = {"g1": Collector(), "g2": Collector()}
    router = Router()
    for group, collector in groups.items():

        @router.subscriber("any", group=group, exchange=exchange, exchange_type="fanout")
        async def handle(event: Event, _c: Collector = collector) -> None:
            _c.add(event.n)

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish("whatever", body(1), exchange=exchange)
    await publisher.publish("something-else", body(2), exchange=exchange)
    for collector in groups.values():
        assert sorted(await collector.wait(2)) == [1, 2]


async def test_headers_key_and_id_travel_with_the_message(env: RabbitEnv) -> None:
    topic = env.topic()
    got = Collector()
    router = Router()

    @router.subscriber(topic, group="g")
    async def handle(event: Event, message: Message) -> None:
        got.add(message)

    await env.serve(router)
    publisher = create_broker("rabbitmq", **_broker_options(env))
    assert isinstance(publisher, RabbitBroker)
    await publisher.connect()
    try:
        result = await publisher.publish(
            topic, body(7), key=b"user-1", headers={"trace": "abc", "x-tenant": "t1"}
        )
    finally:
        await publisher.close()
    (message,) = await got.wait(1)
    assert message.headers == {"trace": "abc", "x-tenant": "t1"}  # internal ones stripped
    assert message.key == b"user-1"
    assert message.id == result.message_id and message.topic == topic
    assert message.attempt == 1 and message.delivery_tag == 1
    assert abs(message.timestamp - time.time()) < 60


def _broker_options(env: RabbitEnv) -> dict[str, object]:
    return {"exchange": env.exchange, "dead_letter_exchange": env.dlx, "url": env.url}


async def test_unroutable_publish_raises_instead_of_vanishing(env: RabbitEnv) -> None:
    publisher = await env.connected()
    with pytest.raises(UnroutableError, match="matched no queue"):
        await publisher.publish(env.topic("nobody-listens"), b"{}")
    relaxed = await env.connected(mandatory=False)
    await relaxed.publish(env.topic("nobody-listens"), b"{}")  # explicitly accepted loss


async def test_publish_to_a_missing_exchange_is_a_clear_error(env: RabbitEnv) -> None:
    publisher = await env.connected()
    with pytest.raises(TopologyError, match="does not exist"):
        await publisher.publish("t", b"{}", exchange=f"missing.{env.tag}")
    # The broker stays usable afterwards.
    with pytest.raises(UnroutableError):
        await publisher.publish(env.topic(), b"{}")


async def test_exchange_of_another_type_is_a_clear_error(env: RabbitEnv) -> None:
    await env.connected(exchange=f"typed.{env.tag}", exchange_type="topic")
    clash = env.broker(exchange=f"typed.{env.tag}", exchange_type="fanout")
    with pytest.raises(TopologyError, match="cannot declare exchange"):
        await clash.connect()


async def test_unreachable_rabbitmq_fails_fast_and_clearly() -> None:
    broker = RabbitBroker("amqp://guest:secret@127.0.0.1:1/", connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(RabbitUnavailableError, match=r"127\.0\.0\.1:1") as info:
        await broker.connect()
    assert time.monotonic() - started < 5
    assert "secret" not in str(info.value)
    await broker.close()  # safe after a failed connect
    with pytest.raises(RuntimeError, match="not connected"):
        await broker.publish("t", b"")


async def test_an_exchange_deleted_at_runtime_fails_only_its_own_publishes(
    env: RabbitEnv,
) -> None:
    doomed = f"doomed.{env.tag}"
    got = Collector()
    router = Router()

    @router.subscriber(env.topic(), group="g")
    async def handle(event: Event) -> None:
        got.add(event.n)

    @router.subscriber("x", group="g", exchange=doomed)
    async def on_doomed(event: Event) -> None:
        got.add(-event.n)

    await env.serve(router)
    publisher = await env.connected()
    await publisher.publish("x", body(1), exchange=doomed)
    connection = await aio_pika.connect(env.url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(doomed)
    results = await asyncio.gather(
        publisher.publish("x", body(2), exchange=doomed),
        publisher.publish(env.topic(), body(3)),
        return_exceptions=True,
    )
    assert isinstance(results[0], TopologyError)
    assert not isinstance(results[1], BaseException), results[1]
    assert sorted(await got.wait(2)) == [-1, 3]
    with pytest.raises(TopologyError, match="does not exist"):
        await publisher.publish("x", body(4), exchange=doomed)
