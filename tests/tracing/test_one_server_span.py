"""Issue 8 item 17: one request makes one SERVER span in one trace, on every transport.

FastAPI >= 0.13x starts its own server span whenever a global tracer provider exists, in a
trace of its own, next to the framework's. A provider passed explicitly (as most tracing tests
do) never shows it, so these tests install the global provider the way ``setup_tracing()``
does and run the reference service's HTTP, gRPC and WebSocket servers under it.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import websockets
from opentelemetry.trace import SpanKind

from tests.app_template.conftest import endpoint, make_bootstrap
from tests.tracing.spans import SpanRecorder

from app_template.api.order.v1 import order_pb2, order_pb2_grpc
from app_template.wire import wire_app

CREATE = {"customer_id": "c-1", "amount_cents": 500, "currency": "EUR"}


async def test_each_request_is_one_server_span_in_one_trace_with_a_global_provider(
    global_recorder: SpanRecorder, tmp_path: Path
) -> None:
    app = wire_app(make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"))
    app.handle_signals = False
    async with app:
        async with httpx.AsyncClient(base_url=endpoint(app, "http")) as client:
            created = await client.post("/v1/orders", json=CREATE)
        assert created.status_code == 201, created.text
        target = endpoint(app, "grpc").removeprefix("grpc://")
        async with grpc.aio.insecure_channel(target) as channel:
            stub = order_pb2_grpc.OrderServiceStub(channel)
            await stub.GetOrder(order_pb2.GetOrderRequest(id=created.json()["id"]))
        async with websockets.connect(endpoint(app, "ws") + "/ws/orders") as ws:
            frame = {"type": "order.watch", "id": 1, "payload": {"order_id": created.json()["id"]}}
            await ws.send(json.dumps(frame))
            assert json.loads(await ws.recv())["type"] == "order.watch.reply"
    # Stopped: every request has finished, so every span any layer started has ended.

    spans = global_recorder.spans
    servers = [span for span in spans if span.kind is SpanKind.SERVER]
    assert sorted(span.name for span in servers) == sorted(
        ["POST /v1/orders", "order.v1.OrderService/GetOrder", "order.watch"]
    ), [(s.name, s.instrumentation_scope and s.instrumentation_scope.name) for s in spans]
    # Nothing outside those three traces: no second trace per request from another layer.
    assert {span.context.trace_id for span in spans} == {s.context.trace_id for s in servers}
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "pykratos"
    }
