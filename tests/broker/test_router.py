from __future__ import annotations

from typing import Any

import pydantic
import pytest

from framework.broker import BatchPolicy, Message, RetryPolicy, Router
from framework.broker.signature import signature_of


class Paid(pydantic.BaseModel):
    order_id: int


def test_decorator_returns_the_original_function_which_stays_callable() -> None:
    router = Router()
    calls: list[int] = []

    async def on_paid(event: Paid) -> None:
        calls.append(event.order_id)

    decorated = router.subscriber("payments", group="orders")(on_paid)
    assert decorated is on_paid


async def test_handler_is_a_plain_function_in_unit_tests() -> None:
    router = Router()
    seen: list[int] = []

    @router.subscriber("payments", group="orders")
    async def on_paid(event: Paid, message: Message | None = None) -> str:
        seen.append(event.order_id)
        return "done"

    assert await on_paid(Paid(order_id=3)) == "done"
    assert seen == [3]


def test_spec_records_every_option() -> None:
    router = Router()

    def mw(handler: Any) -> Any:
        return handler

    @router.subscriber(
        "payments",
        group="orders",
        concurrency=8,
        retry=5,
        dlq="payments.failed",
        batch=50,
        middlewares=[mw],
        name="paid-batch",
        prefetch=100,
    )
    async def on_paid(events: list[Paid]) -> None:
        pass

    (spec,) = router.subscribers
    assert spec.topic == "payments"
    assert spec.handler is on_paid
    assert spec.group == "orders"
    assert spec.concurrency == 8
    assert spec.retry == RetryPolicy(max_attempts=5)
    assert spec.dlq_topic == "payments.failed"
    assert spec.batch == BatchPolicy(max_size=50)
    assert spec.middlewares == (mw,)
    assert spec.display_name == "paid-batch"
    assert dict(spec.options) == {"prefetch": 100}


def test_defaults() -> None:
    router = Router()

    @router.subscriber("payments")
    async def on_paid(event: Paid) -> None:
        pass

    (spec,) = router.subscribers
    assert spec.group is None
    assert spec.retry == RetryPolicy()
    assert spec.batch is None
    assert spec.dlq_topic == "payments.dlq"
    assert spec.display_name.endswith("on_paid")


def test_two_groups_on_one_topic_coexist_and_included_routers_mount() -> None:
    billing, shipping, root = Router(), Router(), Router()

    @billing.subscriber("order-created", group="billing")
    async def bill(event: dict[str, Any]) -> None:
        pass

    @shipping.subscriber("order-created", group="shipping")
    async def ship(event: dict[str, Any]) -> None:
        pass

    root.include_router(billing)
    root.include_router(shipping)

    # A subscriber added after inclusion still shows up.
    @shipping.subscriber("order-cancelled", group="shipping")
    async def unship(event: dict[str, Any]) -> None:
        pass

    assert [(s.topic, s.group) for s in root.subscribers] == [
        ("order-created", "billing"),
        ("order-created", "shipping"),
        ("order-cancelled", "shipping"),
    ]
    with pytest.raises(ValueError, match="cycle"):
        billing.include_router(root)


def test_router_middlewares_wrap_included_subscribers() -> None:
    def outer(handler: Any) -> Any:
        return handler

    def inner(handler: Any) -> Any:
        return handler

    child = Router()
    root = Router(middlewares=[outer])

    @child.subscriber("t", middlewares=[inner])
    async def handle(event: Any) -> None:
        pass

    root.include_router(child)
    assert root.subscribers[0].middlewares == (outer, inner)
    assert child.subscribers[0].middlewares == (inner,)


def test_local_annotations_resolve_at_decoration_time() -> None:
    class Local(pydantic.BaseModel):
        x: int

    router = Router()

    @router.subscriber("t")
    async def handle(event: Local, message: Message) -> None:
        pass

    signature = signature_of(handle)
    assert signature.payload_type is Local
    assert signature.message_param == "message"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"topic": ""}, "topic must be a non-empty string"),
        ({"concurrency": 0}, "concurrency must be an int >= 1"),
        ({"retry": "3"}, "retry must be a RetryPolicy"),
        ({"batch": 1.5}, "batch must be None"),
        ({"broadcast": True, "group": "g"}, "broadcast=True gives every instance"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict[str, Any], error: str) -> None:
    args = {"topic": "t", **kwargs}
    topic = args.pop("topic")
    with pytest.raises((ValueError, TypeError), match=error):
        Router().subscriber(topic, **args)


def test_bad_handlers_are_rejected_at_decoration() -> None:
    router = Router()

    def sync_handler(event: Any) -> None:
        pass

    async def no_params() -> None:
        pass

    async def extra_param(event: Any, other: int) -> None:
        pass

    async def not_a_list(events: Paid) -> None:
        pass

    async def single_with_list_message(event: Paid, messages: list[Message]) -> None:
        pass

    with pytest.raises(TypeError, match="must be an `async def` function"):
        router.subscriber("t")(sync_handler)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="payload as its first parameter"):
        router.subscriber("t")(no_params)
    with pytest.raises(TypeError, match="parameter 'other' has no default"):
        router.subscriber("t")(extra_param)
    with pytest.raises(TypeError, match="batch subscriber takes list"):
        router.subscriber("t", batch=10)(not_a_list)
    with pytest.raises(TypeError, match="must be annotated Message"):
        router.subscriber("t")(single_with_list_message)
    assert router.subscribers == []


def test_optional_message_parameter_is_recognised() -> None:
    router = Router()

    @router.subscriber("t")
    async def handle(event: Any, message: Message | None = None) -> None:
        pass

    assert signature_of(handle).message_param == "message"
