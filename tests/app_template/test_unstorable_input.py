"""Issue 8 item 9: input that is valid JSON/protobuf but not storable is refused by validation.

NUL characters, lone surrogates, strings longer than their column, integers beyond the
column's range (and values the use case would turn into such a thing, like ``"ßAB"`` which
upper-cases to four letters) must answer 400 / ``INVALID_ARGUMENT`` on every transport, for
every field of the reference service, on SQLite and PostgreSQL; a broker message carrying one
goes to the dead letters with the reason. Before the fix, PostgreSQL answered 500 for most of
them (SQLite stored the over-long ones silently).

One service per database serves the whole module (building one per case would cost ~0.5 s
each); every case then checks that a valid order still goes through, so a poisoned
connection or a half-stored row would show.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
import pytest_asyncio
import websockets

from framework import App, errors
from framework.broker import BrokerServer, Router
from framework.middleware import VALIDATOR
from tests.services import postgres_url, require_url

from app_template.api.order.v1 import order_pb2, order_pb2_grpc
from app_template.api.order.v1.events import PAYMENT_SUCCESS
from app_template.wire import wire_app

from .conftest import DATABASES, UNKNOWN_ID, _drop_schema, endpoint, make_bootstrap

# Some fifty cases over real sockets, each also storing a valid order: seconds in all, so out of
# a scaffolded project's default run (the kit tests cover the transports there); the point of
# the matrix is PostgreSQL, which `-m services` runs.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

INT64_MAX = 2**63 - 1
VALID: dict[str, Any] = {"customer_id": "c-1", "amount_cents": 500, "currency": "EUR"}

# (field, bad value, why): the create-order request, every field.
CREATE_CASES: list[tuple[str, Any, str]] = [
    ("customer_id", "\u0000", "NUL alone (the issue's sample)"),
    ("customer_id", "ab\u0000cd", "NUL inside"),
    ("customer_id", "x" * 65, "longer than String(64)"),
    ("customer_id", "é" * 65, "65 characters, 130 bytes"),
    ("customer_id", "\ud800", "lone surrogate"),
    ("customer_id", "", "empty"),
    ("amount_cents", INT64_MAX + 1, "beyond BigInteger"),
    ("amount_cents", 10**30, "far beyond BigInteger"),
    ("amount_cents", 0, "not positive"),
    ("amount_cents", float("nan"), "NaN"),
    ("amount_cents", float("inf"), "Infinity"),
    ("amount_cents", 1e300, "huge float"),
    ("currency", "E\u0000R", "NUL"),
    ("currency", "EURO", "longer than String(3)"),
    ("currency", "ßAB", "upper-cases to 4 characters"),
    ("currency", "\ud800AB", "lone surrogate"),
]


def _on_grpc(value: Any) -> bool:
    """Whether protobuf can carry ``value`` at all (its client refuses to build the rest)."""
    if isinstance(value, float):
        return False
    if isinstance(value, int):
        return -(2**63) <= value <= INT64_MAX
    return "\ud800" not in value


GRPC_CASES = [c for c in CREATE_CASES if _on_grpc(c[1])]

# Order ids looked up by GET/pay (HTTP), GetOrder/PayOrder (gRPC), order.watch (WebSocket).
ID_CASES: list[tuple[Any, str]] = [
    ("\u0000", "NUL"),
    ("a\u0000b", "NUL inside"),
    ("x" * 33, "longer than String(32)"),
]


class DeadLetters:
    """Bodies that reached the payment dead letters, and an event set on each arrival."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.arrived = asyncio.Event()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=DATABASES)
async def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[App, DeadLetters]]:
    """The reference service plus a subscriber on the payment dead letters."""
    schema = None
    if request.param == "postgres":
        require_url(postgres_url(), "PostgreSQL")
        url, schema = postgres_url(), f"pykratos_test_{uuid.uuid4().hex[:12]}"
    else:
        url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('db')) / 'orders.db'}"
    service = wire_app(make_bootstrap(url, schema))
    service.handle_signals = False
    dead = DeadLetters()
    dlq = Router()

    @dlq.subscriber(f"{PAYMENT_SUCCESS}.dlq", group="test-dlq")
    async def on_dead(body: bytes) -> None:
        dead.bodies.append(body)
        dead.arrived.set()

    events = next(s for s in service.servers if isinstance(s, BrokerServer))
    service.servers.insert(0, BrokerServer(events.broker, routers=[dlq], name="dlq"))
    async with service:
        yield service, dead
    if schema is not None:
        await _drop_schema(schema)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(app: tuple[App, DeadLetters]) -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client per service: building one costs tens of milliseconds (httpx loads its
    TLS trust store even for plain HTTP), which a client per case would pay some fifty times."""
    async with httpx.AsyncClient(base_url=endpoint(app[0], "http")) as client:
        yield client


def _ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [f"{c[0]}-{c[-1]}" if len(c) == 3 else c[-1] for c in cases]


async def _still_creates(http: httpx.AsyncClient) -> None:
    ok = await http.post("/v1/orders", json=VALID)
    assert ok.status_code == 201, ok.text


def _assert_http_400(reply: httpx.Response) -> None:
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["code"] == 400 and body["reason"] == VALIDATOR, body


@pytest.mark.parametrize(("field", "value", "why"), CREATE_CASES, ids=_ids(CREATE_CASES))
async def test_http_create_refuses_unstorable_field(
    http: httpx.AsyncClient, field: str, value: Any, why: str
) -> None:
    # json.dumps, not httpx's encoder: it writes a lone surrogate as the escape a client sends.
    body = json.dumps({**VALID, field: value}).encode()
    reply = await http.post(
        "/v1/orders", content=body, headers={"content-type": "application/json"}
    )
    _assert_http_400(reply)
    await _still_creates(http)


@pytest.mark.parametrize(("field", "value", "why"), GRPC_CASES, ids=_ids(GRPC_CASES))
async def test_grpc_create_refuses_unstorable_field(
    app: tuple[App, DeadLetters], http: httpx.AsyncClient, field: str, value: Any, why: str
) -> None:
    service, _ = app
    target = endpoint(service, "grpc").removeprefix("grpc://")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.CreateOrder(order_pb2.CreateOrderRequest(**{**VALID, field: value}))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert errors.from_exception(raised.value).reason == VALIDATOR
    await _still_creates(http)


@pytest.mark.parametrize(("value", "why"), ID_CASES, ids=_ids(ID_CASES))
@pytest.mark.parametrize("route", ["GET /v1/orders/{id}", "POST /v1/orders/{id}/pay"])
async def test_http_order_id_refused_before_the_database(
    http: httpx.AsyncClient, route: str, value: str, why: str
) -> None:
    method, path = route.split(" ")
    reply = await http.request(method, path.replace("{id}", quote(value, safe="")))
    _assert_http_400(reply)


@pytest.mark.parametrize(("value", "why"), ID_CASES, ids=_ids(ID_CASES))
@pytest.mark.parametrize("rpc", ["GetOrder", "PayOrder"])
async def test_grpc_order_id_refused_before_the_database(
    app: tuple[App, DeadLetters], rpc: str, value: str, why: str
) -> None:
    service, _ = app
    target = endpoint(service, "grpc").removeprefix("grpc://")
    request = getattr(order_pb2, f"{rpc}Request")(id=value)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, rpc)(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert errors.from_exception(raised.value).reason == VALIDATOR


@pytest.mark.parametrize(("value", "why"), [*ID_CASES, ("\ud800", "lone surrogate")],
                         ids=[*_ids(ID_CASES), "lone surrogate"])
async def test_websocket_watch_refuses_unstorable_order_id(
    app: tuple[App, DeadLetters], value: str, why: str
) -> None:
    service, _ = app
    frame = json.dumps({"type": "order.watch", "id": 1, "payload": {"order_id": value}})
    async with websockets.connect(endpoint(service, "ws") + "/ws/orders") as ws:
        await ws.send(frame)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert reply["type"] == "error", reply
    assert reply["error"]["code"] == 400, reply


@pytest.mark.parametrize(
    ("field", "value"),
    [("order_id", "\u0000"), ("order_id", "x" * 33), ("amount_cents", INT64_MAX + 1),
     ("currency", "ßAB")],
)
async def test_broker_message_with_unstorable_field_is_dead_lettered_with_the_reason(
    app: tuple[App, DeadLetters], field: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    service, dead = app
    dead.bodies.clear()
    dead.arrived.clear()
    events = next(s for s in service.servers if isinstance(s, BrokerServer) and s.name != "dlq")
    body = json.dumps({"order_id": UNKNOWN_ID, "amount_cents": 5, "currency": "EUR", field: value})
    with caplog.at_level(logging.WARNING, logger="pykratos"):
        await events.broker.publish(PAYMENT_SUCCESS, body.encode(), key=b"k")
        await asyncio.wait_for(dead.arrived.wait(), 10)
    assert dead.bodies == [body.encode()]
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == 1 and f"{field}:" in lines[0], lines
    # Straight to the dead letters as undecodable, not after retries of a failing handler.
    assert "invalid PaymentSucceeded" in lines[0], lines


async def test_a_database_error_that_escapes_is_a_typed_500_that_leaks_nothing(
    app: tuple[App, DeadLetters], http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation cannot foresee every fault (a full disk, a dropped connection): those stay
    a 500, but the recovery middleware's ``INTERNAL_ERROR``, never the driver's text."""
    from sqlalchemy.exc import OperationalError

    service, _ = app
    database = service.resources[0]

    def broken() -> None:
        raise OperationalError("INSERT INTO orders secret_sql", {}, Exception("password=hunter2"))

    monkeypatch.setattr(database, "sessions", type("S", (), {"begin": staticmethod(broken)}))
    reply = await http.post("/v1/orders", json=VALID)
    assert reply.status_code == 500
    assert reply.json() == {
        "code": 500, "reason": "INTERNAL_ERROR", "message": "internal error", "metadata": {}
    }
    target = endpoint(service, "grpc").removeprefix("grpc://")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = order_pb2_grpc.OrderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.CreateOrder(order_pb2.CreateOrderRequest(**VALID))
    assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (raised.value.details() or "")
    assert "hunter2" not in str(raised.value.trailing_metadata())
