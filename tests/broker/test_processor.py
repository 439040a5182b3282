from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic
import pytest

from framework.broker import (
    Message,
    Outcome,
    ProcessResult,
    RetryLater,
    RetryPolicy,
    Router,
    SubscriberProcessor,
)
from framework.errors import BadRequest, NotFound
from framework.middleware import Handler, Middleware, recovery, validate
from framework.transport import from_context

FAST = RetryPolicy(max_attempts=3, backoff=0.0)


class Paid(pydantic.BaseModel):
    order_id: int

    def validate(self) -> None:  # type: ignore[override]
        if self.order_id < 0:
            raise ValueError("order_id must be >= 0")


def msg(body: bytes, **kw: Any) -> Message:
    return Message(body, topic=kw.pop("topic", "payments"), **kw)


def one_processor(router: Router, **kw: Any) -> SubscriberProcessor:
    (spec,) = router.subscribers
    return SubscriberProcessor(spec, None, kw.pop("middlewares", ()), kw.pop("kind", "kafka"), **kw)


async def test_success_decodes_into_the_model_and_acks() -> None:
    router = Router()
    seen: list[Any] = []

    @router.subscriber("payments")
    async def handle(event: Paid, message: Message) -> None:
        seen.append((event, message.offset))

    result = await one_processor(router).process(msg(b'{"order_id": 5}', offset=9))
    assert result == ProcessResult(Outcome.ACK, 1)
    assert seen == [(Paid(order_id=5), 9)]


async def test_decode_failure_is_dead_at_once_without_calling_the_handler() -> None:
    router = Router()
    calls: list[Any] = []

    @router.subscriber("payments", retry=FAST)
    async def handle(event: Paid) -> None:
        calls.append(event)

    result = await one_processor(router).process(msg(b'{"order_id": "abc"}'))
    assert result.outcome is Outcome.DEAD
    assert result.attempts == 1
    assert result.error_type == "DecodeError"
    assert result.reason.startswith("decode: invalid Paid: order_id: Input should be a valid")
    assert calls == []


async def test_failing_handler_is_retried_then_dead_with_the_exception() -> None:
    router = Router()
    attempts: list[int] = []

    @router.subscriber("payments", retry=FAST)
    async def handle(event: Paid, message: Message) -> None:
        attempts.append(message.attempt)
        raise ValueError("card declined")

    message = msg(b'{"order_id": 1}')
    result = await one_processor(router).process(message)
    assert attempts == [1, 2, 3]
    assert result == ProcessResult(Outcome.DEAD, 3, "ValueError: card declined", "ValueError")
    assert message.attempt == 3


async def test_a_retry_that_succeeds_acks_with_the_attempt_count() -> None:
    router = Router()
    failures = [RuntimeError("flaky")]

    @router.subscriber("payments", retry=FAST)
    async def handle(event: Paid) -> None:
        if failures:
            raise failures.pop()

    result = await one_processor(router).process(msg(b'{"order_id": 1}'))
    assert result == ProcessResult(Outcome.ACK, 2)


async def test_no_in_process_retry_raises_retry_later_until_exhausted() -> None:
    router = Router()

    @router.subscriber("payments", retry=RetryPolicy(max_attempts=2, backoff=0.5))
    async def handle(event: Paid) -> None:
        raise KeyError("missing")

    processor = one_processor(router)
    first = msg(b'{"order_id": 1}')
    with pytest.raises(RetryLater) as info:
        await processor.process(first, retry_in_process=False)
    assert info.value.delay == 0.5
    assert isinstance(info.value.cause, KeyError)
    redelivered = msg(b'{"order_id": 1}', attempt=2)
    result = await processor.process(redelivered, retry_in_process=False)
    assert result.outcome is Outcome.DEAD
    assert result.attempts == 2


async def test_a_400_error_is_poison_and_not_retried() -> None:
    router = Router()
    calls: list[int] = []

    @router.subscriber("payments", retry=FAST)
    async def handle(event: Paid) -> None:
        calls.append(1)

    # validate() turns Paid.validate()'s ValueError into Error(400, "VALIDATOR").
    processor = one_processor(router, middlewares=[validate()])
    result = await processor.process(msg(b'{"order_id": -1}'))
    assert calls == []
    assert result.outcome is Outcome.DEAD
    assert result.attempts == 1
    assert result.reason == "Error: 400 VALIDATOR: order_id must be >= 0"


async def test_other_framework_errors_are_retried() -> None:
    router = Router()
    calls: list[int] = []

    @router.subscriber("payments", retry=FAST)
    async def handle(event: Paid) -> None:
        calls.append(1)
        raise NotFound("ORDER_NOT_FOUND", "no order 1")

    result = await one_processor(router).process(msg(b'{"order_id": 1}'))
    assert len(calls) == 3
    assert result.reason == "Error: 404 ORDER_NOT_FOUND: no order 1"


async def test_middleware_sees_the_transport_context_and_runs_in_order() -> None:
    router = Router()
    trail: list[str] = []

    def tag(label: str) -> Middleware:
        def middleware(handler: Handler) -> Handler:
            async def run(request: Any) -> Any:
                transport = from_context()
                assert transport is not None
                trail.append(f"{label}:{transport.kind}:{transport.operation}")
                trail.append(f"{label}:header={transport.request_headers.get('trace')}")
                return await handler(request)

            return run

        return middleware

    @router.subscriber("payments", middlewares=[tag("spec")])
    async def handle(event: Paid) -> None:
        transport = from_context()
        assert transport is not None and isinstance(transport.raw, Message)
        trail.append(f"handler:{event.order_id}")

    processor = one_processor(router, middlewares=[tag("server")], endpoint="kafka://h:1")
    await processor.process(msg(b'{"order_id": 4}', headers={"trace": "abc"}))
    assert trail == [
        "server:kafka:payments",
        "server:header=abc",
        "spec:kafka:payments",
        "spec:header=abc",
        "handler:4",
    ]
    assert from_context() is None  # the context is reset after the message


async def test_message_payload_is_passed_through() -> None:
    router = Router()
    seen: list[Message] = []

    @router.subscriber("payments")
    async def handle(message: Message) -> None:
        seen.append(message)

    message = msg(b"\x00not json")
    assert (await one_processor(router).process(message)).outcome is Outcome.ACK
    assert seen == [message]


async def test_unusable_payload_type_fails_at_construction() -> None:
    router = Router()

    class Opaque:
        pass

    @router.subscriber("payments")
    async def handle(event: Opaque) -> None:
        pass

    with pytest.raises(TypeError, match=r"handler .*handle: JsonCodec cannot decode into"):
        one_processor(router)


async def test_batch_decodes_every_message_and_retries_the_whole_batch() -> None:
    router = Router()
    calls: list[tuple[list[int], list[int]]] = []

    @router.subscriber("payments", batch=10, retry=FAST)
    async def handle(events: list[Paid], messages: list[Message]) -> None:
        calls.append(([e.order_id for e in events], [m.attempt for m in messages]))
        if len(calls) < 2:
            raise RuntimeError("db down")

    batch = [msg(b'{"order_id": %d}' % i) for i in range(3)]
    result = await one_processor(router).process_batch(batch)
    assert result == ProcessResult(Outcome.ACK, 2)
    assert calls == [([0, 1, 2], [1, 1, 1]), ([0, 1, 2], [2, 2, 2])]


async def test_batch_undecodable_message_goes_to_the_sink_and_the_rest_is_handled() -> None:
    router = Router()
    handled: list[list[int]] = []
    sunk: list[tuple[bytes, str]] = []

    @router.subscriber("payments", batch=10)
    async def handle(events: list[Paid]) -> None:
        handled.append([e.order_id for e in events])

    async def sink(message: Message, result: ProcessResult) -> None:
        sunk.append((message.body, result.reason))

    batch = [msg(b'{"order_id": 1}'), msg(b"garbage"), msg(b'{"order_id": 3}')]
    processor = one_processor(router, dead_letter_sink=sink)
    assert (await processor.process_batch(batch)).outcome is Outcome.ACK
    assert handled == [[1, 3]]
    assert sunk == [
        (b"garbage", "decode: invalid Paid: Invalid JSON: expected value at line 1 column 1")
    ]


async def test_batch_without_sink_is_dead_as_a_whole_on_a_decode_failure() -> None:
    router = Router()

    @router.subscriber("payments", batch=10)
    async def handle(events: Sequence[Paid]) -> None:
        raise AssertionError("not called")

    batch = [msg(b'{"order_id": 1}'), msg(b"[]", partition=2, offset=8)]
    result = await one_processor(router).process_batch(batch)
    assert result.outcome is Outcome.DEAD
    assert result.reason.endswith("(payments[2]@8)")


async def test_handler_errors_raised_as_bad_request_are_dead_immediately() -> None:
    router = Router()

    @router.subscriber("payments", retry=FAST)
    async def handle(event: Paid) -> None:
        raise BadRequest("INVALID_ORDER", "order is archived")

    result = await one_processor(router).process(msg(b'{"order_id": 1}'))
    assert (result.outcome, result.attempts) == (Outcome.DEAD, 1)


async def test_dead_reason_names_the_cause_behind_recovery() -> None:
    router = Router()

    @router.subscriber("payments", retry=1)
    async def handle(event: Paid) -> None:
        raise ZeroDivisionError("division by zero")

    processor = one_processor(router, middlewares=[recovery()])
    result = await processor.process(msg(b'{"order_id": 1}'))
    assert result.reason == (
        "Error: 500 INTERNAL_ERROR: internal error <- ZeroDivisionError: division by zero"
    )
    assert result.error_type == "ZeroDivisionError"


async def test_a_returned_value_is_the_encoded_reply_and_none_is_no_reply() -> None:
    router = Router()

    @router.subscriber("payments")
    async def answer(event: Paid) -> Paid | None:
        return Paid(order_id=event.order_id * 2) if event.order_id else None

    processor = one_processor(router)
    replied = await processor.process(msg(b'{"order_id": 21}'))
    assert replied.outcome is Outcome.ACK and replied.reply == b'{"order_id":42}'
    silent = await processor.process(msg(b'{"order_id": 0}'))
    assert silent.outcome is Outcome.ACK and silent.reply is None
