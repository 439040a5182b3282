"""Built-in middleware and the selector, on a bare handler (no transport needed)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from pydantic import BaseModel

from framework.errors import Error, NotFound
from framework.middleware import (
    INTERNAL_ERROR,
    TIMEOUT,
    VALIDATOR,
    Handler,
    chain,
    recovery,
    selector,
    timeout,
    validate,
)
from framework.transport import Transport, transport_scope


async def echo(request: Any) -> Any:
    return request


def tagging(tag: str, seen: list[str]):  # type: ignore[no-untyped-def]
    def middleware(handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            seen.append(tag)
            return await handler(request)

        return run

    return middleware


async def test_chain_runs_first_given_outermost() -> None:
    seen: list[str] = []
    handler = chain(tagging("a", seen), tagging("b", seen))(echo)
    assert await handler(1) == 1
    assert seen == ["a", "b"]


@pytest.mark.parametrize(
    ("kind", "operation", "selected"),
    [
        ("grpc", "/order.v1.OrderService/GetOrder", True),  # prefix
        ("http", "GET /v1/orders/{order_id}", True),  # regex
        ("http", "POST /admin", True),  # exact path
        ("http", "POST /admin/users", False),
        ("kafka", "payment-success", False),
    ],
)
async def test_selector_matches_by_prefix_regex_and_exact_path(
    kind: str, operation: str, selected: bool
) -> None:
    seen: list[str] = []
    middleware = (
        selector(tagging("sel", seen))
        .prefix("/order.v1.")
        .regex(r"GET /v1/orders/.*")
        .path("POST /admin")
        .build()
    )
    handler = middleware(echo)
    with transport_scope(Transport(kind=kind, operation=operation)):
        await handler(None)
        await handler(None)  # the cached decision gives the same answer
    assert seen == (["sel", "sel"] if selected else [])


async def test_selector_restricted_to_a_kind() -> None:
    seen: list[str] = []
    handler = selector(tagging("sel", seen)).prefix("").kind("grpc").build()(echo)
    with transport_scope(Transport(kind="http", operation="GET /")):
        await handler(None)
    with transport_scope(Transport(kind="grpc", operation="/a.B/C")):
        await handler(None)
    assert seen == ["sel"]


async def test_recovery_turns_exceptions_into_internal_error_and_keeps_errors() -> None:
    async def boom(_: Any) -> Any:
        raise KeyError("secret")

    async def missing(_: Any) -> Any:
        raise NotFound("X_NOT_FOUND", "x")

    with pytest.raises(Error) as raised:
        await recovery()(boom)(None)
    assert raised.value.code == 500 and raised.value.reason == INTERNAL_ERROR
    assert "secret" not in raised.value.message
    with pytest.raises(Error) as raised:
        await recovery()(missing)(None)
    assert raised.value.reason == "X_NOT_FOUND"


async def test_timeout_gives_504_and_leaves_the_handlers_own_timeouts_alone() -> None:
    async def slow(_: Any) -> Any:
        await asyncio.sleep(5)

    async def own_timeout(_: Any) -> Any:
        raise TimeoutError("upstream")

    with pytest.raises(Error) as raised:
        await timeout(0.05)(slow)(None)
    assert raised.value.code == 504 and raised.value.reason == TIMEOUT
    with pytest.raises(TimeoutError, match="upstream"):
        await timeout(1)(own_timeout)(None)
    assert await timeout(1)(echo)("fast") == "fast"


class Quantity(BaseModel):
    value: int

    def validate(self) -> None:  # type: ignore[override]
        if self.value < 0:
            raise ValueError("value must be >= 0")


class Plain:
    pass


async def test_validate_uses_registry_then_own_validate_method() -> None:
    handler = validate({Plain: lambda _: False})(echo)
    assert (await handler(Quantity(value=1))).value == 1
    with pytest.raises(Error) as raised:
        await handler(Quantity(value=-1))
    assert raised.value.code == 400 and raised.value.reason == VALIDATOR
    assert "value must be >= 0" in raised.value.message
    with pytest.raises(Error, match="invalid Plain"):
        await handler(Plain())
    assert await handler("no validator") == "no validator"


async def test_timeout_buckets_release_finished_tasks_and_expire_only_slow_ones() -> None:
    async def sleepy(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    handler = timeout(0.2, resolution=0.05)(sleepy)
    results = await asyncio.gather(handler(0.01), handler(1.0), handler(0.05),
                                   return_exceptions=True)
    assert results[0] == 0.01 and results[2] == 0.05
    assert isinstance(results[1], Error) and results[1].reason == TIMEOUT


async def test_cancellation_from_elsewhere_is_not_reported_as_timeout() -> None:
    handler = timeout(10)(lambda _: asyncio.sleep(5))
    task = asyncio.create_task(handler(None))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_handler_swallowing_its_timeout_leaves_the_task_usable() -> None:
    async def stubborn(_: Any) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "gave up"
        return "finished"

    async def slow(_: Any) -> Any:
        await asyncio.sleep(5)

    async def worker() -> None:  # one task serving requests in turn, like a consumer's worker
        task = asyncio.current_task()
        assert task is not None
        assert await timeout(0.05)(stubborn)(None) == "gave up"
        assert task.cancelling() == 0
        with pytest.raises(Error) as raised:
            await timeout(0.05)(slow)(None)
        assert raised.value.reason == TIMEOUT

    await asyncio.wait_for(asyncio.create_task(worker()), 5)


@pytest.mark.parametrize("seconds", [math.inf, math.nan, 0, -1])
def test_timeout_refuses_what_is_not_a_finite_positive_number(seconds: float) -> None:
    # timeout(inf) used to be accepted and then fail every request (OverflowError, a 500).
    with pytest.raises(ValueError, match="finite number of seconds > 0"):
        timeout(seconds)
    with pytest.raises(ValueError, match="resolution must be a finite"):
        timeout(1, resolution=math.inf)
