"""AsyncAPI 3.0.0: the document, validated against the official JSON Schema shipped beside
these tests (schema/README.md says where it comes from), served by the HTTP server and
written by ``pykratos docs``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest
from pydantic import BaseModel

from framework import App
from framework.asyncapi import asyncapi_html, build_asyncapi
from framework.broker import BrokerServer, MemoryBroker, Message, Router
from framework.cli.main import main as pykratos
from framework.testing import TestApp
from framework.transport.http import HttpServer
from tests.app_template.conftest import make_bootstrap

from app_template.api.order.v1 import order_pb2
from app_template.wire import wire_app

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "schema" / "asyncapi-3.0.0.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def _validate(document: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in
              VALIDATOR.iter_errors(document)]  # fmt: skip
    assert errors == []
    for ref in _refs(document):  # the schema does not check that references resolve
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@pytest.fixture
def reference(tmp_path: Path) -> App:
    return wire_app(make_bootstrap(f"sqlite+aiosqlite:///{tmp_path / 'orders.db'}"))


def test_the_validator_catches_a_broken_document(reference: App) -> None:
    document = build_asyncapi(reference)
    document["operations"]["events.receive.on_payment_succeeded"]["action"] = "publish"
    assert list(VALIDATOR.iter_errors(document))  # AsyncAPI 2's verb is not valid in 3.0


def test_reference_service_document(reference: App) -> None:
    document = build_asyncapi(reference)
    _validate(document)
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"]["events"]["protocol"] == "memory"
    assert document["servers"]["websocket"]["protocol"] == "ws"
    channels = {c["address"]: c for c in document["channels"].values()}
    assert {"payment-success", "order-paid", "/ws/orders"} <= set(channels)

    operations = document["operations"]
    actions = {
        (_resolve(document, op["channel"])["address"], op["action"]) for op in operations.values()
    }
    assert {("payment-success", "receive"), ("payment-success", "send"),
            ("order-paid", "receive"), ("order-paid", "send")} <= actions  # fmt: skip

    def payload(address: str, message: str) -> Any:
        ref = channels[address]["messages"][message]
        return _resolve(document, _resolve(document, ref)["payload"])

    paid = payload("payment-success", "PaymentSucceeded")
    assert set(paid["properties"]) == {"order_id", "amount_cents", "currency"}
    assert set(payload("order-paid", "OrderPaid")["required"]) >= {"order_id", "paid_at"}

    watch = payload("/ws/orders", "ws.order.watch")
    assert watch["properties"]["type"]["const"] == "order.watch"
    assert "order_id" in _resolve(document, watch["properties"]["payload"])["properties"]
    reply = payload("/ws/orders", "ws.order.watch.reply")
    assert "status" in _resolve(document, reply["properties"]["payload"])["properties"]
    status = payload("/ws/orders", "ws.order.status")
    assert set(_resolve(document, status["properties"]["payload"])["properties"]) == {
        "order_id", "status", "changed_at"}  # fmt: skip
    assert "error" in payload("/ws/orders", "ws.error")["properties"]
    watch_op = operations["websocket.ws.orders.order.watch"]
    assert len(watch_op["reply"]["messages"]) == 2  # the reply and the error envelope


class Shipped(msgspec.Struct):
    parcel: str
    weight_grams: int


class Tagged(BaseModel):
    tags: list[str]


def test_msgspec_protobuf_and_raw_payloads() -> None:
    router = Router()

    @router.subscriber("shipped")
    async def on_shipped(event: Shipped) -> None: ...

    @router.subscriber("orders.pb")
    async def on_order(order: order_pb2.Order) -> None: ...

    @router.subscriber("raw")
    async def on_raw(message: Message) -> None: ...

    @router.subscriber("tagged", batch=10)
    async def on_tagged(events: list[Tagged]) -> None: ...

    router.publisher("blobs", bytes)
    app = App("mixed", version="2.1.0", servers=[BrokerServer(MemoryBroker(), [router])])
    document = build_asyncapi(app)
    _validate(document)
    schemas = document["components"]["schemas"]
    assert schemas["Shipped"]["required"] == ["parcel", "weight_grams"]
    order = schemas["order.v1.Order"]
    assert order["properties"]["amountCents"] == {"type": "string", "format": "int64"}
    assert document["components"]["messages"]["Order"]["contentType"] == "application/x-protobuf"
    assert schemas["Tagged"]["properties"]["tags"]["type"] == "array"
    blobs = document["components"]["messages"]["bytes"]["payload"]
    assert blobs == {"type": "string", "format": "binary"}


def test_a_tag_filter_is_listed_on_its_receive_operation() -> None:
    router = Router()

    @router.subscriber("orders", group="billing", tags={"paid", "created"})
    async def on_order(event: Shipped) -> None:
        """Bill the order."""

    @router.subscriber("orders", group="audit")
    async def on_any(event: Shipped) -> None: ...

    app = App("tags", servers=[BrokerServer(MemoryBroker(), [router])])
    document = build_asyncapi(app)
    _validate(document)
    [tagged] = [op for key, op in document["operations"].items() if "on_order" in key]
    [untagged] = [op for key, op in document["operations"].items() if "on_any" in key]
    assert tagged["x-tags"] == ["created", "paid"]
    assert tagged["summary"] == "Bill the order. (group: billing, tags: created, paid)"
    assert "x-tags" not in untagged and "tags" not in untagged["summary"]


async def test_served_beside_openapi_with_an_offline_view(reference: App) -> None:
    async with TestApp(reference) as kit:
        served = await kit.http.get("/asyncapi.json")
        assert served.status_code == 200
        assert served.json() == build_asyncapi(reference)
        assert (await kit.http.get("/openapi.json")).status_code == 200
        page = await kit.http.get("/asyncapi")
    assert page.headers["content-type"].startswith("text/html")
    assert "<script src" not in page.text and "<link" not in page.text  # nothing to fetch
    assert '"payment-success"' in page.text


def test_html_cannot_be_broken_out_of_by_the_document() -> None:
    page = asyncapi_html({"info": {"title": "</script><b>x"}, "channels": {}})
    assert "</script><b>" not in page


def test_pykratos_docs_writes_both_documents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT / "app_template")  # any folder inside the project
    assert pykratos(["docs", str(tmp_path / "docs")]) == 0
    openapi = json.loads((tmp_path / "docs" / "openapi.json").read_text())
    assert "/v1/orders" in openapi["paths"]
    asyncapi = json.loads((tmp_path / "docs" / "asyncapi.json").read_text())
    _validate(asyncapi)
    assert "payment-success" in asyncapi["channels"]
    assert (tmp_path / "docs" / "asyncapi.html").is_file()


async def test_a_running_http_server_serves_its_apps_document() -> None:
    router = Router()

    @router.subscriber("pings")
    async def on_ping(text: str) -> None: ...

    http = HttpServer(port=0)
    app = App("pinger", servers=[BrokerServer(MemoryBroker(), [router]), http],
              handle_signals=False)  # fmt: skip
    async with app, httpx.AsyncClient(base_url=http.endpoint) as client:
        served = (await client.get("/asyncapi.json")).json()
    assert served["info"]["title"] == "pinger"
    assert [c["address"] for c in served["channels"].values()] == ["pings"]
    alone = HttpServer(port=0)  # in no App: nothing to document
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=alone.app),
                                 base_url="http://t") as client:  # fmt: skip
        missing = await client.get("/asyncapi.json")
    assert (missing.status_code, missing.json()["reason"]) == (404, "ASYNCAPI_NOT_AVAILABLE")
