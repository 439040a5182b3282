"""Issue 8 item 9 (HTTP, the kind "valid JSON but not storable"): a JSON string holding a lone
UTF-16 surrogate escape (``"\\ud800"``) is refused with 400 ``VALIDATOR`` before the handler
runs; before the fix the handler ran and the reply's encoder failed with a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel

from framework.middleware import recovery
from framework.transport.http import HttpServer, Router


class Tags(BaseModel):
    name: str
    tags: list[str] = []


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    router = Router()
    handled: list[str] = []

    @router.post("/echo")
    async def echo(body: Tags) -> dict[str, object]:
        handled.append(body.name)
        return {"name": body.name, "tags": body.tags}

    server = HttpServer("127.0.0.1", 0, middlewares=[recovery()])
    server.include_router(router)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.endpoint) as http:
            yield http, handled
    finally:
        await server.stop(5)


async def _post(http: httpx.AsyncClient, raw: bytes) -> httpx.Response:
    return await http.post("/echo", content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"name": "\\ud800"}', "name"),
        (b'{"name": "ok", "tags": ["a", "x\\udfffy"]}', "tags[1]"),
        (b'{"name": "\\udc00\\ud800"}', "name"),  # low then high: not a pair
    ],
)
async def test_lone_surrogate_is_400_before_the_handler(
    client: tuple[httpx.AsyncClient, list[str]], raw: bytes, field: str
) -> None:
    http, handled = client
    reply = await _post(http, raw)
    assert reply.status_code == 400, reply.text
    body = reply.json()
    assert body["reason"] == "VALIDATOR"
    assert body["message"].startswith(f"{field}: ")
    assert handled == []


async def test_surrogate_pairs_and_plain_escapes_are_fine(
    client: tuple[httpx.AsyncClient, list[str]],
) -> None:
    http, handled = client
    reply = await _post(http, b'{"name": "\\ud83d\\ude00 \\u00e9", "tags": ["\\\\ud800"]}')
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"name": "\U0001f600 \u00e9", "tags": ["\\ud800"]}
    assert handled == ["\U0001f600 \u00e9"]
