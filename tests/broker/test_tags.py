"""Tags (``publish(tag=)``, ``subscriber(tags=)``): validation, the x-tag header, the
framework's filter (single messages and batches, dead letters of a failed batch), the test
kit. Broker-side filtering is checked per broker (tests/rabbitmq, tests/mqtt) and by the
conformance promise ``tags``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from framework import App
from framework.broker import (
    BrokerServer,
    MemoryBroker,
    Message,
    Publisher,
    RetryPolicy,
    Router,
    SubscriberProcessor,
    SubscriberSpec,
)
from framework.broker.tags import (
    MAX_TAG_LENGTH,
    TAG_HEADER,
    check_tag,
    check_tags,
    routing_tag,
    tag_matches,
    tagged_headers,
)
from framework.observer import set_observer
from framework.testing import TestApp
from tests.broker.helpers import Collector


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    memory = MemoryBroker(partitions=1)
    await memory.connect()
    try:
        yield memory
    finally:
        await memory.close()


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["created", "Order_Paid-2", "x", "a" * MAX_TAG_LENGTH])
def test_valid_tags_pass(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("", "non-empty"),
        ("a.b", "letters, digits"),  # a NATS / AMQP word separator
        ("a/b", "letters, digits"),  # an MQTT level separator
        ("a*", "letters, digits"),
        ("#", "letters, digits"),
        ("+", "letters, digits"),
        ("a>", "letters, digits"),
        ("two words", "letters, digits"),
        ("grüße", "letters, digits"),
        ("a" * (MAX_TAG_LENGTH + 1), f"at most {MAX_TAG_LENGTH}"),
    ],
)
def test_invalid_tags_are_refused_naming_the_problem(tag: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_tag(tag)


def test_a_tag_set_is_a_collection_of_valid_tags() -> None:
    assert check_tags(None) == frozenset()
    assert check_tags(["paid", "created", "paid"]) == {"created", "paid"}
    with pytest.raises(TypeError, match="collection of tags"):
        check_tags("created")
    with pytest.raises(ValueError, match="at least one tag"):
        check_tags(set())
    with pytest.raises(ValueError, match="letters, digits"):
        check_tags({"ok", "not ok"})
    with pytest.raises(TypeError, match="must be a str"):
        check_tag(7)


def test_router_records_tags_and_refuses_bad_ones_at_decoration() -> None:
    router = Router()

    @router.subscriber("orders", tags={"created", "paid"})
    async def on_order(message: Message) -> None: ...

    @router.subscriber("orders")
    async def on_any(message: Message) -> None: ...

    tagged, untagged = router.subscribers
    assert tagged.tags == frozenset({"created", "paid"})
    assert untagged.tags == frozenset()
    with pytest.raises(ValueError, match=r"'a\.b'"):
        router.subscriber("orders", tags={"a.b"})
    with pytest.raises(TypeError, match="collection of tags"):
        router.subscriber("orders", tags="created")


def test_tagged_headers_set_x_tag_and_keep_the_callers_mapping() -> None:
    given = {"tenant": "t1"}
    assert tagged_headers(given, "created") == {"tenant": "t1", TAG_HEADER: "created"}
    assert given == {"tenant": "t1"}
    assert tagged_headers(None, "paid") == {TAG_HEADER: "paid"}
    assert tagged_headers(given, None) is given
    # A republished message keeps the tag its headers carry; an explicit tag wins.
    assert tagged_headers({TAG_HEADER: "old"}, "new") == {TAG_HEADER: "new"}
    with pytest.raises(ValueError, match="letters, digits"):
        tagged_headers(None, "bad tag")


def test_a_broker_routes_only_by_a_valid_header_tag() -> None:
    assert routing_tag({TAG_HEADER: "paid"}) == "paid"
    assert routing_tag({TAG_HEADER: "from/elsewhere"}) is None
    assert routing_tag({}) is None and routing_tag(None) is None


def test_tag_matches_reads_the_header() -> None:
    created = Message(b"", headers={TAG_HEADER: "created"})
    plain = Message(b"")
    assert (created.tag, plain.tag) == ("created", None)
    assert tag_matches(frozenset(), created) and tag_matches(frozenset(), plain)
    assert tag_matches(frozenset({"created"}), created)
    assert not tag_matches(frozenset({"paid"}), created)
    assert not tag_matches(frozenset({"paid"}), plain)


# -- publishing ---------------------------------------------------------------------------


async def test_publish_refuses_a_bad_tag_before_sending(broker: MemoryBroker) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        await broker.publish("orders", b"x", tag="no/slash")
    with pytest.raises(ValueError, match="letters, digits"):
        await Publisher(broker).publish("orders", {"id": 1}, tag="no.dot")


async def test_publisher_tag_reaches_the_handler_as_x_tag(broker: MemoryBroker) -> None:
    got = Collector()
    router = Router()

    @router.subscriber("orders", group="g")
    async def handle(message: Message) -> None:
        got.add(message.headers)

    server = BrokerServer(broker, [router])
    await server.start()
    try:
        await Publisher(broker).publish("orders", {"id": 1}, headers={"h": "v"}, tag="paid")
        [headers] = await got.wait(1)
        assert headers == {"h": "v", TAG_HEADER: "paid"}
    finally:
        await server.stop(5)


# -- the framework's filter ---------------------------------------------------------------


async def test_processor_acks_a_filtered_out_message_without_decoding_it() -> None:
    calls: list[int] = []

    async def handle(order: dict[str, int]) -> None:
        calls.append(order["id"])

    spec = SubscriberSpec("orders", handle, tags=frozenset({"paid"}))
    processor = SubscriberProcessor(spec)
    skipped = await processor.process(Message(b"{not json", headers={TAG_HEADER: "created"}))
    untagged = await processor.process(Message(b"{not json"))
    handled = await processor.process(Message(b'{"id": 3}', headers={TAG_HEADER: "paid"}))
    assert [r.outcome.value for r in (skipped, untagged, handled)] == ["ack", "ack", "ack"]
    assert calls == [3]


class _Outcomes:
    """An observer keeping (outcome, count, had a duration) per processed attempt."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bool]] = []

    def message_processed(self, system: str, destination: str, group: str | None,
                          outcome: str, duration: float | None, count: int,
                          error_type: str | None) -> None:  # fmt: skip
        self.seen.append((outcome, count, duration is not None))


async def test_filtered_out_messages_are_reported_to_the_metrics_observer() -> None:
    async def handle(orders: list[dict[str, int]]) -> None: ...

    outcomes = _Outcomes()
    set_observer(outcomes)  # type: ignore[arg-type]
    try:
        single = SubscriberProcessor(SubscriberSpec("o", handle, tags=frozenset({"paid"})))
        await single.process(Message(b"{}", headers={TAG_HEADER: "created"}))
        batch = SubscriberProcessor(
            SubscriberSpec("o", handle, tags=frozenset({"paid"}), batch=10)
        )
        await batch.process_batch([
            Message(b'{"id": 1}', headers={TAG_HEADER: "created"}),
            Message(b'{"id": 2}'),
            Message(b'{"id": 3}', headers={TAG_HEADER: "paid"}),
        ])  # fmt: skip
    finally:
        set_observer(None)
    assert outcomes.seen == [("filtered", 1, False), ("filtered", 2, False), ("ok", 1, True)]


async def test_a_failed_batch_dead_letters_only_its_own_messages(broker: MemoryBroker) -> None:
    batches: list[list[bytes]] = []
    dead = Collector()
    router = Router()

    @router.subscriber(
        "pays", group="g", batch=10, tags={"paid"}, retry=RetryPolicy(max_attempts=1)
    )
    async def handle(messages: list[Message]) -> None:
        batches.append([m.body for m in messages])
        raise RuntimeError("the whole batch fails")

    @router.subscriber("pays.dlq", group="dlq", dlq="")
    async def on_dead(message: Message) -> None:
        dead.add(message.body)

    # Everything is published before the server starts: one batch holds all four.
    for body, tag in ((b"c1", "created"), (b"p1", "paid"), (b"u1", None), (b"p2", "paid")):
        await broker.publish("pays", body, tag=tag)
    server = BrokerServer(broker, [router])
    await server.start()
    try:
        await dead.wait(2)
        assert batches == [[b"p1", b"p2"]]
        await broker.publish("pays.dlq", b"marker")  # after any stray dead letter
        await dead.wait(3)
        assert dead.items == [b"p1", b"p2", b"marker"]
    finally:
        await server.stop(5)


# -- the test kit -------------------------------------------------------------------------

kit_router = Router()


@kit_router.subscriber("kit-orders", group="g", tags={"paid"})
async def on_paid(order: dict[str, int]) -> None: ...


@kit_router.subscriber("kit-orders", group="all")
async def on_any_order(order: dict[str, int]) -> None: ...


async def test_test_kit_publishes_tags_and_records_only_what_a_filter_lets_through() -> None:
    app = App("kit", servers=[BrokerServer(MemoryBroker(), [kit_router], name="events")])
    async with TestApp(app) as kit:
        await kit.publish("kit-orders", {"id": 1}, tag="created")
        await kit.publish("kit-orders", {"id": 2}, tag="paid")
        everything = await kit.broker.handled(on_any_order, 2)
        [paid] = await kit.broker.handled(on_paid, 1)
        assert paid.payload == {"id": 2}
        assert sorted(r.message.headers[TAG_HEADER] for r in everything) == ["created", "paid"]
        assert [p.tag for p in kit.broker.published_to("kit-orders")] == ["created", "paid"]
        with pytest.raises(ValueError, match="letters, digits"):
            await kit.publish("kit-orders", {"id": 3}, tag="bad tag")
        assert len(kit.broker.received(on_paid)) == 1


def test_members_of_one_group_with_different_tags_are_refused() -> None:
    # The group shares the topic's messages: the "a" member acked, unhandled, the "b"
    # messages that reached it, so half of them were lost.
    router = Router()

    @router.subscriber("t", group="g", tags={"a"})
    async def only_a(message: Message) -> None: ...

    @router.subscriber("t", group="g")
    async def everything(message: Message) -> None: ...

    with pytest.raises(ValueError, match=r"'.*only_a' \(tags a\) and '.*everything' "
                                         r"\(every tag\) share group 'g' on topic 't'"):
        BrokerServer(MemoryBroker(), [router])
    # the same tags, other groups, or broadcast are fine
    fine = Router()
    for group, tags in (("g", {"a"}), ("g", {"a"}), ("h", {"b"}), (None, None)):
        fine.subscriber("t", group=group, tags=tags)(only_a)
    fine.subscriber("t", broadcast=True, tags={"c"})(only_a)
    BrokerServer(MemoryBroker(), [fine])
