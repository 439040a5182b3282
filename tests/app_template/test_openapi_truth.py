"""The reference service's OpenAPI document lists the error statuses and body the server really
answers: each error provoked here must be documented for its operation with the framework's
error schema, and no operation documents FastAPI's 422 (the server never sends one)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from app_template.wire import wire_app

from .conftest import UNKNOWN_ID, endpoint
from .test_operations import SECRET, _bootstrap

Seen = list[tuple[str, str, httpx.Response]]


def _documented(document: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    responses = document["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path}: {status} not in {sorted(responses)}"
    ref = responses[str(status)]["content"]["application/json"]["schema"]["$ref"]
    schema: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


_JSON_TYPES: dict[str, type] = {"integer": int, "string": str, "object": dict}


def _conforms(body: Any, schema: dict[str, Any]) -> None:
    """``body`` matches the error schema: exactly its properties, each of its type (a
    scaffolded project's tests run without a JSON Schema library)."""
    assert isinstance(body, dict) and set(body) == set(schema["properties"]), body
    assert set(schema["required"]) == set(schema["properties"])
    for name, spec in schema["properties"].items():
        assert isinstance(body[name], _JSON_TYPES[spec["type"]]), (name, body)
        values = spec.get("additionalProperties")
        if values is not None:
            assert all(isinstance(v, _JSON_TYPES[values["type"]]) for v in body[name].values())


def _check(document: dict[str, Any], seen: Seen) -> None:
    for method, path, response in seen:
        schema = _documented(document, method, path, response.status_code)
        _conforms(response.json(), schema)
    text = json.dumps(document)
    assert '"422"' not in text and "HTTPValidationError" not in text


async def _paid(client: httpx.AsyncClient, order_id: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 10
    while (await client.get(f"/v1/orders/{order_id}", headers=headers)).json()["status"] != "PAID":
        assert time.monotonic() < deadline, "the order never became PAID"
        await asyncio.sleep(0.02)


async def test_every_error_answered_is_documented_with_the_error_schema(tmp_path: Path) -> None:
    app = wire_app(
        _bootstrap(
            tmp_path,
            auth={"enabled": True, "key": SECRET, "public_operations": ["GET /v1/orders"]},
            ratelimit={
                "enabled": True,
                "limiter": "token_bucket",
                "rate": 0.001,
                "burst": 1,
                "operations": ["GET /v1/orders"],
            },
        )
    )
    app.handle_signals = False
    token = jwt.encode({"sub": "t", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    signed = {"Authorization": f"Bearer {token}"}
    seen: Seen = []
    async with app, httpx.AsyncClient(base_url=endpoint(app, "http"), headers=signed) as client:
        document = (await client.get("/openapi.json")).json()

        async def call(method: str, template: str, url: str, **kw: Any) -> httpx.Response:
            response = await client.request(method, url, **kw)
            if response.status_code >= 400:
                seen.append((method, template, response))
            return response

        orders, one, pay = "/v1/orders", "/v1/orders/{order_id}", "/v1/orders/{order_id}/pay"
        await call("POST", orders, orders, json={"customer_id": "c1", "amount_cents": -5})
        await call("POST", orders, orders, content=b"x" * (1024 * 1024 + 1))
        await call("POST", orders, orders, content=b"{not json", headers={"content-type": "a/json"})
        order_id = (await call("POST", orders, orders, json={"customer_id": "c1",
                                                             "amount_cents": 100})).json()["id"]
        await call("GET", one, f"/v1/orders/{UNKNOWN_ID}")
        await call("GET", one, "/v1/orders/not-an-id")
        await call("GET", one, f"/v1/orders/{order_id}", headers={"Authorization": ""})
        await call("POST", pay, f"/v1/orders/{UNKNOWN_ID}/pay")
        await call("POST", pay, f"/v1/orders/{order_id}/pay")
        await _paid(client, order_id, signed)
        await call("POST", pay, f"/v1/orders/{order_id}/pay")
        await call("GET", orders, "/v1/orders?limit=abc")
        await call("GET", orders, "/v1/orders")
        await call("GET", orders, "/v1/orders")
    statuses = {(m, p, r.status_code) for m, p, r in seen}
    assert statuses >= {
        ("POST", orders, 400), ("POST", orders, 413), ("GET", one, 404), ("GET", one, 400),
        ("GET", one, 401), ("POST", pay, 404), ("POST", pay, 409), ("GET", orders, 429),
    }, statuses
    _check(document, seen)
    # Guards are documented only where their selector applies.
    assert "401" not in document["paths"][orders]["get"]["responses"]  # public
    assert "429" not in document["paths"][one]["get"]["responses"]  # not rate limited


async def test_guards_off_are_not_documented(tmp_path: Path) -> None:
    app = wire_app(_bootstrap(tmp_path))
    app.handle_signals = False
    async with app, httpx.AsyncClient(base_url=endpoint(app, "http")) as client:
        document = (await client.get("/openapi.json")).json()
    for item in document["paths"].values():
        for operation in item.values():
            statuses = set(operation["responses"])
            assert not statuses & {"401", "429", "422"}, statuses
            assert {"413", "500", "504"} <= statuses  # body limit, recovery, timeout
