"""MQTT broker on the machine's Mosquitto: topics, wildcards, QoS, headers, groups, retained."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiomqtt
import pytest

from framework.broker import Message, Router, UnsupportedOptionError
from framework.transport.mqtt import MqttBroker, TopicError
from framework.transport.mqtt.headers import ESCAPED

from .conftest import Inbox, collecting_router, started

pytestmark = pytest.mark.mqtt


async def test_wildcards_headers_key_and_qos_levels(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    base = unique("wild")
    plus, hash_ = Inbox(), Inbox()
    server = await started(
        MqttBroker(url),
        collecting_router(f"{base}/+/created", plus, group="g"),
        collecting_router(f"{base}/#", hash_, group="g", qos=2),
    )
    try:
        # Non-UTF-8 bytes (surrogate-escaped), U+0000 and a tab cannot be MQTT UTF-8 strings.
        headers = {"trace": "abc", "bin": b"\xc3\x28\x00".decode("utf-8", "surrogateescape"),
                   "tab\there": "x\ty", "ünï": "çødé"}
        await publisher.publish(f"{base}/order/created", b'{"id": 1}', key=b"\xff\x00k",
                                headers=headers, qos=1)
        await publisher.publish(f"{base}/order/paid", b"\x00\x01binary", qos=2)
        await publisher.publish(f"{base}/order/created/x", b"q0", qos=0)  # '+' is one level

        [created] = await plus.wait_for(1)
        assert created.topic == f"{base}/order/created"
        assert created.body == b'{"id": 1}'
        assert created.headers == headers  # byte-exact, internal properties stripped
        assert created.key == b"\xff\x00k"
        assert len(created.id) == 32
        assert created.raw.qos == 1
        received = await hash_.wait_for(3)
        by_topic = {m.topic: m for m in received}
        assert by_topic[f"{base}/order/paid"].body == b"\x00\x01binary"
        assert by_topic[f"{base}/order/paid"].raw.qos == 2
        assert by_topic[f"{base}/order/created/x"].raw.qos == 0
        await asyncio.sleep(0.2)
        assert len(plus.messages) == 1
    finally:
        await server.stop(5)


async def test_escaped_headers_travel_as_one_base64_user_property(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("escaped")
    received: asyncio.Future[list[tuple[str, str]]] = asyncio.get_running_loop().create_future()
    server = urlsplit(url)
    assert server.hostname is not None
    async with aiomqtt.Client(server.hostname, server.port or 1883,
                              protocol=aiomqtt.ProtocolVersion.V5) as raw:
        await raw.subscribe(topic, qos=1)
        await publisher.publish(topic, b"x", headers={"plain": "text", "bad": "\udcff"})
        async for message in raw.messages:
            received.set_result(list(message.properties.UserProperty))  # type: ignore[union-attr]
            break
    pairs = received.result()
    assert ("plain", "text") in pairs  # readable by any MQTT client
    assert (ESCAPED, "YmFk:/w==") in pairs  # base64("bad"):base64(b"\xff")


async def test_two_groups_each_get_everything_and_a_group_splits(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("groups")
    group_a, b = Inbox(), Inbox()
    members: dict[str, list[int]] = {"a1": [], "a2": []}

    def member(name: str) -> Router:
        router = Router()

        @router.subscriber(topic, group="a")
        async def collect(message: Message) -> None:
            members[name].append(int(message.body))
            group_a.add(message)

        return router

    servers = [
        await started(MqttBroker(url), member("a1")),
        await started(MqttBroker(url), member("a2")),
        await started(MqttBroker(url), collecting_router(topic, b, group="b")),
    ]
    try:
        for n in range(20):
            await publisher.publish(topic, str(n).encode())
        await b.wait_for(20)
        await group_a.wait_for(20)
        await asyncio.sleep(0.2)  # a message delivered to both members would show by now
        assert sorted(members["a1"] + members["a2"]) == list(range(20))  # each to one member
        assert members["a1"] and members["a2"]  # and both members got some
        assert [int(m.body) for m in b.messages] == list(range(20))  # in publish order
    finally:
        for server in servers:
            await server.stop(5)


async def test_broadcast_reaches_every_instance(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("broadcast")
    one, two = Inbox(), Inbox()
    servers = [
        await started(MqttBroker(url), collecting_router(topic, one, broadcast=True)),
        await started(MqttBroker(url), collecting_router(topic, two, broadcast=True)),
    ]
    try:
        await publisher.publish(topic, b"all")
        assert [m.body for m in await one.wait_for(1)] == [b"all"]
        assert [m.body for m in await two.wait_for(1)] == [b"all"]
    finally:
        for server in servers:
            await server.stop(5)


async def test_retained_message_reaches_a_later_subscriber(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("retained")
    await publisher.publish(topic, b"last-known", retain=True)
    inbox = Inbox()
    server = await started(MqttBroker(url), collecting_router(topic, inbox, broadcast=True))
    try:
        [message] = await inbox.wait_for(1)
        assert message.body == b"last-known"
        assert message.raw.retain
    finally:
        await server.stop(5)
        await publisher.publish(topic, b"", retain=True)  # clears it


async def test_delay_wildcard_topics_and_unknown_options_are_refused(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    with pytest.raises(NotImplementedError, match="no delayed delivery"):
        await publisher.publish(unique("d"), b"x", delay=1.0)
    with pytest.raises(NotImplementedError, match="deliver_at="):
        await publisher.publish(unique("d"), b"x", deliver_at=datetime.now(UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        await publisher.publish(unique("d"), b"x", deliver_at=datetime.now())
    with pytest.raises(TopicError, match="wildcards"):
        await publisher.publish("a/+/b", b"x")
    with pytest.raises(TopicError, match="last level"):
        await started(MqttBroker(url), collecting_router("a/#/b", Inbox()))
    with pytest.raises(UnsupportedOptionError, match="prefetch"):
        await started(MqttBroker(url), collecting_router("a/b", Inbox(), prefetch=1))
    with pytest.raises(UnsupportedOptionError, match="qos must be one of"):
        await started(MqttBroker(url), collecting_router("a/b", Inbox(), qos=3))


async def test_failing_handler_is_retried_then_dead_lettered_with_reasons(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    from framework.broker.policy import RetryPolicy

    base = unique("dlq")
    attempts: list[int] = []
    router = Router()

    @router.subscriber(f"{base}/+", group="g", retry=RetryPolicy(max_attempts=3, backoff=0.01))
    async def fails(message: Message) -> None:
        attempts.append(message.attempt)
        raise ValueError("cannot handle")

    custom: list[Message] = []

    @router.subscriber(f"{base}-custom", group="g", retry=1, dlq=f"{base}-elsewhere")
    async def fails_too(message: Message) -> None:
        custom.append(message)
        raise ValueError("nope")

    dead = Inbox()
    elsewhere = Inbox()
    server = await started(
        MqttBroker(url),
        router,
        collecting_router(f"{base}/item/dlq", dead, broadcast=True),
        collecting_router(f"{base}-elsewhere", elsewhere, broadcast=True),
    )
    try:
        await publisher.publish(f"{base}/item", b"\xffraw", key=b"k1", headers={"h": "v"})
        [letter] = await dead.wait_for(1)
        assert attempts == [1, 2, 3]
        assert letter.body == b"\xffraw"
        assert letter.key == b"k1"
        assert letter.headers["h"] == "v"
        assert letter.headers["x-dlq-reason"] == "ValueError: cannot handle"
        assert letter.headers["x-dlq-error-type"] == "ValueError"
        assert letter.headers["x-original-topic"] == f"{base}/item"
        assert letter.headers["x-attempts"] == "3"
        await publisher.publish(f"{base}-custom", b"{}")
        [moved] = await elsewhere.wait_for(1)
        assert moved.headers["x-dlq-reason"] == "ValueError: nope"
        assert len(custom) == 1
    finally:
        await server.stop(5)


async def test_undecodable_message_goes_to_the_dead_letter_topic_at_once(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    from pydantic import BaseModel

    class Paid(BaseModel):
        order_id: int

    topic = unique("decode")
    handled: list[int] = []
    seven = asyncio.Event()
    router = Router()

    @router.subscriber(topic, group="g")
    async def on_paid(event: Paid) -> None:
        handled.append(event.order_id)
        seven.set()

    dead = Inbox()
    server = await started(
        MqttBroker(url), router, collecting_router(f"{topic}/dlq", dead, broadcast=True)
    )
    try:
        await publisher.publish(topic, b"not json")
        await publisher.publish(topic, b'{"order_id": 7}')
        [letter] = await dead.wait_for(1)
        assert letter.body == b"not json"
        assert letter.headers["x-dlq-error-type"] == "DecodeError"
        await asyncio.wait_for(seven.wait(), 5)
        assert handled == [7]
    finally:
        await server.stop(5)


async def test_batch_subscriber_gets_lists_and_acknowledges_them(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    from pydantic import BaseModel

    class Item(BaseModel):
        n: int

    topic = unique("batch")
    batches: list[list[int]] = []
    all_in = asyncio.Event()
    router = Router()

    @router.subscriber(topic, group="g", batch=5)
    async def on_items(items: list[Item]) -> None:
        batches.append([item.n for item in items])
        if sum(len(b) for b in batches) == 12:
            all_in.set()

    server = await started(MqttBroker(url), router)
    try:
        await asyncio.gather(*(publisher.publish(topic, b'{"n": %d}' % n) for n in range(12)))
        await asyncio.wait_for(all_in.wait(), 10)
        assert sorted(n for b in batches for n in b) == list(range(12))
        assert max(len(b) for b in batches) <= 5
        [subscription] = server.broker.subscriptions  # type: ignore[attr-defined]
        assert subscription._acks.unfinished == 0  # every delivery acknowledged
    finally:
        await server.stop(5)


async def test_two_handlers_with_one_subscription_each_get_a_session(
    url: str, publisher: MqttBroker, unique: Callable[[str], str]
) -> None:
    """Same topic, same group, two handlers: two client ids (one would knock the other off),
    so the group splits the messages between them, as a RabbitMQ shared queue would."""
    topic = unique("twins")
    inbox = Inbox()
    router = Router()

    @router.subscriber(topic, group="same")
    async def first(message: Message) -> None:
        inbox.add(message)

    @router.subscriber(topic, group="same")
    async def second(message: Message) -> None:
        inbox.add(message)

    broker = MqttBroker(url)
    server = await started(broker, router)
    try:
        ids = {s.connection.client_id for s in broker.subscriptions}
        assert len(ids) == 2
        for n in range(10):
            await publisher.publish(topic, str(n).encode())
        received = await inbox.wait_for(10)
        assert sorted(int(m.body) for m in received) == list(range(10))
        with pytest.raises(TopicError, match="already subscribed"):
            await broker.subscribe(router.subscribers[0], server.processors()[0])
    finally:
        await server.stop(5)


async def test_acks_levels_are_qos_and_dead_letters_go_at_qos_1_at_least(
    url: str, unique: Callable[[str], str]
) -> None:
    from framework.broker import Publisher

    base = unique("levels")
    router = Router()

    @router.subscriber(f"{base}/item", group="g", retry=1)
    async def fails(message: Message) -> None:
        raise ValueError("to the dead letters")

    levels, dead = Inbox(), Inbox()
    fire_and_forget = MqttBroker(url, qos=0)  # the broker's level: "none"
    server = await started(fire_and_forget, router)
    readers = await started(
        MqttBroker(url),
        collecting_router(f"{base}/at/+", levels, broadcast=True, qos=2),
        collecting_router(f"{base}/item/dlq", dead, broadcast=True, qos=2),
    )
    try:
        assert fire_and_forget.default_acks == "none"
        for level in ("none", "leader", "all"):
            publisher = Publisher(fire_and_forget, acks=level)  # type: ignore[arg-type]
            await publisher.publish(f"{base}/at/{level}", b"x")
        received = {m.topic.rsplit("/", 1)[1]: m.raw.qos for m in await levels.wait_for(3)}
        assert received == {"none": 0, "leader": 1, "all": 2}
        await fire_and_forget.publish(f"{base}/item", b"fails")
        [letter] = await dead.wait_for(1)
        assert letter.raw.qos == 1  # not the broker's QoS 0
    finally:
        await readers.stop(5)
        await server.stop(5)
