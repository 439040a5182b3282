"""tracing() on each transport kind, driven through the transport context directly (the
servers themselves are exercised in test_e2e/test_errors), and with tracing off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from framework.broker import Message
from framework.middleware import Handler, chain
from framework.tracing import inject, traceparent, tracing
from framework.transport import Transport, from_context, transport_scope
from tests.tracing.spans import SpanRecorder


async def _echo(request: Any) -> Any:
    return request


def _upstream(recorder: SpanRecorder) -> tuple[dict[str, str], Any]:
    """Headers carrying the context of a finished 'upstream' span, and that span."""
    tracer = recorder.provider.get_tracer("upstream")
    with tracer.start_as_current_span("upstream") as span:
        headers: dict[str, str] = inject({})
    return headers, span.get_span_context()


async def test_off_without_a_provider_the_handler_runs_untraced() -> None:
    calls: list[Any] = []

    async def handler(request: Any) -> Any:
        calls.append(from_context())
        return "reply"

    run = tracing()(handler)  # no provider given, none installed globally
    transport = Transport("http", "GET /x")
    with transport_scope(transport):
        assert await run("request") == "reply"
    assert calls == [transport]
    assert transport.reply_headers == {}


async def test_outside_a_transport_it_just_calls_the_handler(recorder: SpanRecorder) -> None:
    assert await tracing(recorder.provider)(_echo)("x") == "x"
    assert recorder.spans == ()


@pytest.mark.parametrize("kind", ["kafka", "rabbitmq", "memory"])
async def test_broker_message_gets_a_consumer_span_child_of_the_publisher(
    recorder: SpanRecorder, kind: str
) -> None:
    headers, upstream = _upstream(recorder)
    message = Message(
        b'{"id": 1}', "orders.eu", headers=headers, id="m-1", partition=2, offset=41, attempt=3
    )
    with transport_scope(Transport(kind, "orders.eu", message.headers, {}, "", message)):
        await tracing(recorder.provider)(_echo)(None)

    span = recorder.one("process orders.eu")
    assert span.kind is SpanKind.CONSUMER
    assert span.context.trace_id == upstream.trace_id
    assert span.parent is not None and span.parent.span_id == upstream.span_id
    attributes = dict(span.attributes or {})
    assert attributes["messaging.system"] == kind
    assert attributes["messaging.destination.name"] == "orders.eu"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == "m-1"
    assert attributes["messaging.destination.partition.id"] == "2"
    assert attributes["messaging.message.body.size"] == 9
    assert attributes["pykratos.messaging.attempt"] == 3
    offset_key = "messaging.kafka.offset" if kind == "kafka" else "pykratos.messaging.offset"
    assert attributes[offset_key] == 41
    if kind == "rabbitmq":
        assert attributes["messaging.rabbitmq.destination.routing_key"] == "orders.eu"


async def test_a_batch_span_links_every_message(recorder: SpanRecorder) -> None:
    contexts = []
    messages = []
    for _ in range(3):
        headers, upstream = _upstream(recorder)
        contexts.append(upstream)
        messages.append(Message(b"{}", "t", headers=headers))
    with transport_scope(Transport("kafka", "t", messages[0].headers, {}, "", messages)):
        await tracing(recorder.provider)(_echo)([{}, {}, {}])

    span = recorder.one("process t")
    assert span.parent is not None and span.parent.span_id == contexts[0].span_id
    assert [link.context.span_id for link in span.links] == [c.span_id for c in contexts]
    assert dict(span.attributes or {})["messaging.batch.message_count"] == 3


async def test_websocket_is_a_server_span_without_reply_header(recorder: SpanRecorder) -> None:
    headers, upstream = _upstream(recorder)
    transport = Transport("websocket", "chat.send", headers, {}, "", None)
    with transport_scope(transport):
        await tracing(recorder.provider)(_echo)(None)
    span = recorder.one("chat.send")
    assert span.kind is SpanKind.SERVER
    assert span.parent is not None and span.parent.span_id == upstream.span_id
    assert dict(span.attributes or {})["websocket.message.type"] == "chat.send"
    assert transport.reply_headers == {}  # a WebSocket frame has no reply headers


async def test_reply_header_name_is_configurable_or_off(recorder: SpanRecorder) -> None:
    named = Transport("grpc", "/pkg.Svc/Do")
    with transport_scope(named):
        await tracing(recorder.provider, reply_header="x-trace")(_echo)(None)
    span = recorder.one("pkg.Svc/Do")
    assert span.context is not None
    assert named.reply_headers == {"x-trace": traceparent(span.context)}

    silent = Transport("grpc", "/pkg.Svc/Do")
    with transport_scope(silent):
        await tracing(recorder.provider, reply_header=None)(_echo)(None)
    assert silent.reply_headers == {}


async def test_the_span_is_current_inside_the_handler_and_cleared_after(
    recorder: SpanRecorder,
) -> None:
    from opentelemetry import trace

    seen: list[int] = []

    async def handler(request: Any) -> Any:
        seen.append(trace.get_current_span().get_span_context().span_id)
        return None

    # access-log style middleware inside tracing() runs within the span too
    def inner(next_handler: Handler) -> Handler:
        async def run(request: Any) -> Any:
            seen.append(trace.get_current_span().get_span_context().span_id)
            return await next_handler(request)

        return run

    with transport_scope(Transport("http", "GET /x")):
        await chain(tracing(recorder.provider), inner)(handler)(None)
    span = recorder.one("GET /x")
    assert seen == [span.context.span_id] * 2
    assert not trace.get_current_span().get_span_context().is_valid


async def test_a_cancelled_handler_ends_its_span_as_cancelled(recorder: SpanRecorder) -> None:
    entered = asyncio.Event()

    async def stuck(request: Any) -> Any:
        entered.set()
        await asyncio.Event().wait()

    async def serve() -> None:
        with transport_scope(Transport("memory", "slow")):
            await tracing(recorder.provider)(stuck)(None)

    task = asyncio.create_task(serve())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = recorder.one("process slow")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "cancelled"


async def test_an_http_reply_carrying_a_5xx_status_fails_the_span(recorder: SpanRecorder) -> None:
    from starlette.responses import Response

    async def unavailable(request: Any) -> Any:
        return Response(status_code=503)

    with transport_scope(Transport("http", "GET /health")):
        await tracing(recorder.provider)(unavailable)(None)
    span = recorder.one("GET /health")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["http.response.status_code"] == 503
